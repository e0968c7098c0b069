"""``python -m bert4keras``: see :mod:`bert4keras.cli`."""

import sys

from bert4keras.cli import main

sys.exit(main())
