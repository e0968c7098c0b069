"""Multi-device training through keras.distribution (JAX): the same losses as one device.

XLA_FLAGS must be set before jax is imported, so the runs happen in a subprocess with
two virtual CPU devices.
"""

import json
import os
import subprocess
import sys

import keras
import pytest

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax",
                                reason="keras.distribution is implemented for JAX")

SCRIPT = r"""
import json
import keras
import numpy as np
from bert4keras.distribution import transformer_layout_map
from bert4keras.models import build_transformer_model

def losses(distribution):
    keras.distribution.set_distribution(distribution)
    keras.utils.set_random_seed(0)
    bert = build_transformer_model(vocab_size=64, hidden_size=16, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=32, max_position=16,
                                   with_mlm=True)
    bert.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    rng = np.random.RandomState(0)
    tokens = rng.randint(1, 64, (8, 12))
    tokens[::3, 9:] = 0
    history = bert.fit([tokens, np.zeros_like(tokens)], tokens, batch_size=4, epochs=3,
                       shuffle=False, verbose=0)
    return history.history["loss"]

devices = keras.distribution.list_devices()
assert len(devices) == 2, devices
mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"], devices)
print(json.dumps({
    "single": losses(None),
    "data": losses(keras.distribution.DataParallel(devices=devices)),
    "model": losses(keras.distribution.ModelParallel(
        layout_map=transformer_layout_map(mesh), batch_dim_name="batch")),
}))
"""


def test_data_and_model_parallel_match_one_device():
    env = dict(os.environ, KERAS_BACKEND="jax",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for name in ("data", "model"):
        assert max(abs(a - b) for a, b in zip(result["single"], result[name])) < 1e-5, result


def test_layout_map_needs_the_model_axis():
    from bert4keras.distribution import transformer_layout_map

    mesh = keras.distribution.DeviceMesh((1,), ["batch"], keras.distribution.list_devices()[:1])
    with pytest.raises(ValueError, match="no 'model' axis"):
        transformer_layout_map(mesh)
