"""The private Keras APIs bert4keras relies on, listed as data: a future Keras that moves one fails here
with the hook's name and the file to fix, instead of somewhere deep in a training step."""

import importlib
import pathlib
import re
import types

import keras
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# (file that relies on it, where the hook lives, the private name)
HOOKS = [
    ("bert4keras/optimizers.py", "keras.optimizers.Optimizer", "_backend_update_step"),
    ("bert4keras/optimizers.py", "keras.optimizers.Optimizer", "_backend_apply_gradients"),
    ("bert4keras/optimizers.py", "keras.optimizers.Optimizer", "_get_current_learning_rate"),
    ("bert4keras/optimizers.py", "keras.optimizers.Optimizer", "_get_variable_index"),
    ("bert4keras/optimizers.py", "keras.optimizers.Optimizer", "_overwrite_variable_with_gradient"),
    ("bert4keras/optimizers.py", "a built optimizer", "_learning_rate"),
    ("bert4keras/optimizers.py", "a built optimizer", "_trainable_variables"),
    ("bert4keras/adversarial.py", "keras.Model", "_compute_loss"),
    ("bert4keras/adversarial.py", "a JAX model", "compute_loss_and_updates"),
    ("bert4keras/adversarial.py", "a called layer", "_inbound_nodes"),
    ("bert4keras/adversarial.py", "an inbound node", "input_tensors"),
    ("bert4keras/input_checks.py", "a called layer", "_inbound_nodes"),
    ("bert4keras/input_checks.py", "an inbound node", "input_tensors"),
    ("bert4keras/input_checks.py", "a JAX model after fit", "_jax_state"),
    ("bert4keras/input_checks.py", "a JAX model after fit", "jax_state_sync"),
    ("bert4keras/input_checks.py", "a variable", "_value"),
    ("bert4keras/backend.py", "a called layer", "_inbound_nodes"),
    ("bert4keras/backend.py", "an inbound node", "parent_nodes"),
    ("bert4keras/backend.py", "a symbolic tensor", "_keras_history"),
    ("bert4keras/kernels.py", "a seeded SeedGenerator", "_initial_seed"),
    ("bert4keras/kernels.py", "keras.src.random.seed_generator", "draw_seed"),
    ("bert4keras/_keras2_backend.py", "keras.src.backend", "rnn"),
    ("bert4keras/recompute.py", "keras.src.backend", "get_autocast_scope"),
    ("bert4keras/recompute.py", "keras.src.backend", "AutocastScope"),
    ("bert4keras/recompute.py", "keras.src.backend.common.global_state", "get_global_attribute"),
    ("bert4keras/recompute.py", "keras.src.backend.common.global_state", "set_global_attribute"),
    ("bert4keras/recompute.py", "the global state inside a layer call", "current_call_ctx"),
]


def _called_dense():
    x = keras.Input((3,))
    layer = keras.layers.Dense(2)
    return layer, layer(x)


def _built_optimizer():
    optimizer = keras.optimizers.SGD()
    optimizer.build([keras.Variable([1.0])])
    return optimizer


def _inside_a_call():
    global_state = importlib.import_module("keras.src.backend.common.global_state")

    class Probe(keras.layers.Layer):
        def call(self, x):
            self.seen = global_state.get_global_attribute("current_call_ctx")
            return x

    probe = Probe()
    probe(keras.ops.ones((1,)))
    return types.SimpleNamespace(**({"current_call_ctx": probe.seen} if probe.seen is not None else {}))


def _jax_model():
    if keras.backend.backend() != "jax":
        pytest.skip("a JAX trainer hook")
    return keras.Model


def _jax_model_instance():
    """A JAX model after one ``fit`` step (``fit`` leaves ``_jax_state`` set to None)."""
    _jax_model()
    x = keras.Input((3,))
    model = keras.Model(x, keras.layers.Dense(2)(x))
    model.compile(loss="mse", optimizer="sgd")
    model.fit(np.ones((2, 3)), np.ones((2, 2)), verbose=0)
    return model


OWNERS = {
    "a JAX model after fit": _jax_model_instance,
    "a variable": lambda: keras.Variable([1.0]),
    "a built optimizer": _built_optimizer,
    "a JAX model": _jax_model,
    "a called layer": lambda: _called_dense()[0],
    "an inbound node": lambda: _called_dense()[0]._inbound_nodes[0],
    "a symbolic tensor": lambda: _called_dense()[1],
    "a seeded SeedGenerator": lambda: keras.random.SeedGenerator(1),
    "the global state inside a layer call": _inside_a_call,
}


def _owner(where: str):
    if where in OWNERS:
        return OWNERS[where]()
    module, _, name = where.rpartition(".")
    if where.startswith("keras.src"):
        return importlib.import_module(where)
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("path, where, name", HOOKS, ids=[f"{p}:{n}" for p, _, n in HOOKS])
def test_private_hook_still_exists(path, where, name):
    try:
        owner = _owner(where)
    except (ImportError, AttributeError, IndexError) as error:
        pytest.fail(f"Keras {keras.__version__} moved {where} (needed for {name}), which {path} "
                    f"relies on: {error}")
    assert hasattr(owner, name), (f"Keras {keras.__version__} no longer has {name} on {where}, "
                                  f"which {path} relies on")


@pytest.mark.parametrize("path, where, name", HOOKS, ids=[f"{p}:{n}" for p, _, n in HOOKS])
def test_listed_hook_is_still_used(path, where, name):
    source = (ROOT / path).read_text(encoding="utf-8")
    assert name in source, f"{path} no longer uses {name}: remove it from HOOKS"


def test_every_keras_src_import_is_listed():
    listed = {(path, where) for path, where, _ in HOOKS if where.startswith("keras.src")}
    pattern = re.compile(r"(?:from|import)\s+(keras\.src[\w.]*)(?:\s+import\s+(\w+))?")
    unlisted = []
    for file in sorted((ROOT / "bert4keras").rglob("*.py")):
        path = file.relative_to(ROOT).as_posix()
        for module, name in pattern.findall(file.read_text(encoding="utf-8")):
            # ``from keras.src.a import b`` is listed as owner keras.src.a, or keras.src.a.b if b is a module
            if (path, module) not in listed and (path, f"{module}.{name}") not in listed:
                unlisted.append(f"{path}: {module}" + (f" import {name}" if name else ""))
    assert not unlisted, f"private keras.src imports missing from HOOKS: {unlisted}"
