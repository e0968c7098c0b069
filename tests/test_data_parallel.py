"""models.data_parallel: 0.11.5's multi-GPU helper on keras.distribution gives one-device losses.

XLA_FLAGS must be set before jax is imported, so the JAX run happens in a subprocess with two
virtual CPU devices.
"""

import json
import os
import subprocess
import sys

import keras
import pytest

from bert4keras.models import data_parallel

SCRIPT = r"""
import json
import keras
import numpy as np
from bert4keras.models import build_transformer_model, data_parallel

def run(parallel):
    keras.distribution.set_distribution(None)
    keras.utils.set_random_seed(0)
    bert = build_transformer_model(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=32, max_position=16,
                                   with_mlm=True)
    if parallel:
        bert = data_parallel(bert, 2, parts=[1, 1])
    bert.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    tokens = np.random.RandomState(0).randint(1, 64, (8, 12))
    history = bert.fit([tokens, np.zeros_like(tokens)], tokens, batch_size=4, epochs=2,
                       shuffle=False, verbose=0)
    devices = len(bert.weights[0].value.sharding.device_set)
    return history.history["loss"], devices

print(json.dumps({"single": run(False), "parallel": run(True)}))
"""


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "jax", reason="keras.distribution is implemented for JAX")
def test_data_parallel_matches_one_device_and_replicates_weights():
    env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    (single, one), (parallel, two) = result["single"], result["parallel"]
    assert (one, two) == (1, 2)
    assert max(abs(a - b) for a, b in zip(single, parallel)) < 1e-5


def test_data_parallel_rejects_uneven_parts_or_missing_support():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    if keras.backend.backend() == "jax":
        with pytest.raises(ValueError, match="uneven"):
            data_parallel(model, keras.distribution.list_devices()[:1] * 2, parts=[1, 3])
        with pytest.raises(ValueError, match="2 parts for 1 devices"):
            data_parallel(model, 1, parts=[1, 1])
        keras.distribution.set_distribution(None)
    else:
        with pytest.raises(NotImplementedError, match="keras.distribution"):
            data_parallel(model)
