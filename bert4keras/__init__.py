"""bert4keras on Keras 3.

Importing bert4keras before keras picks a Keras backend when ``KERAS_BACKEND``
is unset: JAX if installed (fastest on CPU in our benchmarks), else PyTorch,
else TensorFlow. An explicit ``KERAS_BACKEND`` is always respected.
"""

import importlib.util
import os
import sys

__version__ = "1.0.0.dev0"

_PREFERRED_BACKENDS = ("jax", "torch", "tensorflow")


def _select_backend() -> None:
    if os.environ.get("KERAS_BACKEND") or "keras" in sys.modules:
        return
    for name in _PREFERRED_BACKENDS:
        if importlib.util.find_spec(name) is not None:
            os.environ["KERAS_BACKEND"] = name
            print(
                f"bert4keras: KERAS_BACKEND is not set, using the '{name}' backend "
                "(set KERAS_BACKEND=jax|torch|tensorflow to choose).",
                file=sys.stderr,
            )
            return
    raise ImportError(
        "bert4keras needs a Keras backend, and none of jax, torch or tensorflow "
        "is installed. Install one, e.g. `pip install bert4keras[jax]`."
    )


_select_backend()
