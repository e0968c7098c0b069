"""Optimizers and extend_with_* extensions, pinned to hand-computed reference trajectories.

Run with KERAS_BACKEND=jax and KERAS_BACKEND=torch. Manual ``optimizer.apply`` loops pin
numbers; ``model.fit`` runs check the same code under jit (JAX) and the torch trainer.
"""

import math
import os
import warnings

import keras
import numpy as np
import pytest
from keras import ops

from bert4keras import optimizers as O
from bert4keras.backend import piecewise_linear

# A least-squares problem: Dense(1, use_bias=False), MSE, kernel w0 (4 samples, micro-batches of 2).
X = np.array([[1, 2], [3, -1], [0.5, 0.5], [-2, 1]], "float32")
Y = np.array([1, 0, 2, -1], "float32")
W0 = np.array([0.1, -0.2], "float32")
FULL = [slice(0, 4)] * 2
MICRO = [slice(0, 2), slice(2, 4)] * 2


def to_np(x) -> np.ndarray:
    return np.array(ops.convert_to_numpy(x))


def apply(opt, grads, variables) -> None:
    opt.apply([ops.convert_to_tensor(np.asarray(g, "float32")) for g in grads], variables)


def num(x) -> float:
    return float(to_np(x))


def lsq_grad(w, sl) -> np.ndarray:
    x, y = X[sl], Y[sl]
    return 2.0 / len(x) * x.T @ (x @ w - y)


def run_lsq(opt, batches):
    """Feed the least-squares batches; return w and the optimizer state after every call."""
    w = keras.Variable(W0, name="w")
    ws, states = [], []
    for sl in batches:
        apply(opt, [lsq_grad(to_np(w), sl)], [w])
        ws.append(to_np(w))
        states.append({v.path: to_np(v) for v in opt.variables})
    return ws, states


def slots(state: dict) -> dict:
    """Optimizer state without the step counter and the gradient accumulators."""
    return {k: v for k, v in state.items() if not k.endswith(("iteration", "gradient_accumulator"))}


def lsq_model(opt) -> keras.Model:
    inputs = keras.Input((2,))
    dense = keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(W0[:, None]))
    model = keras.Model(inputs, dense(inputs))
    model.compile(optimizer=opt, loss="mse")
    return model


def mlp(seed: int = 0) -> keras.Model:
    rng = np.random.RandomState(seed)
    inputs = keras.Input((3,))
    h = keras.layers.Dense(4, activation="tanh", name="h")(inputs)
    outputs = keras.layers.Dense(2, name="o")(h)
    model = keras.Model(inputs, outputs)
    model.set_weights([rng.randn(*w.shape).astype("float32") * 0.5 for w in model.get_weights()])
    return model


def data(n: int, seed: int = 1):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, 3).astype("float32")
    return x, np.stack([x.sum(1), x[:, 0] * x[:, 1]], 1).astype("float32")


# --------------------------------------------------------------------------- gradient accumulation


def test_accumulated_sgd_equals_big_batch_and_skips_are_bit_identical():
    big, _ = run_lsq(keras.optimizers.SGD(0.1), FULL)
    np.testing.assert_allclose(big[-1], [0.25459375, 0.11134375], atol=1e-6)
    Accum = O.extend_with_gradient_accumulation(keras.optimizers.SGD)
    ws, _ = run_lsq(Accum(0.1, grad_accum_steps=2), MICRO)
    np.testing.assert_allclose(ws[-1], [0.25459375, 0.11134375], atol=1e-6)
    assert np.array_equal(ws[0], W0) and np.array_equal(ws[2], ws[1])  # micro-steps 1 and 3
    ws, states = run_lsq(Accum(0.1, momentum=0.5, grad_accum_steps=2), MICRO)
    plain, _ = run_lsq(keras.optimizers.SGD(0.1, momentum=0.5), FULL)
    np.testing.assert_allclose(ws[-1], plain[-1], atol=1e-6)
    assert np.array_equal(ws[2], ws[1]) and slots(states[2]).keys() == slots(states[1]).keys()
    assert all(np.array_equal(v, slots(states[2])[k]) for k, v in slots(states[1]).items())


def test_accumulated_bert4keras_adam_matches_big_batch_adam():
    big, _ = run_lsq(O.Adam(0.1), FULL)
    np.testing.assert_allclose(big[0], [0.1999999, -0.10000006], atol=1e-6)
    np.testing.assert_allclose(big[1], [0.29103307, -0.00040825], atol=1e-6)
    opt = O.extend_with_gradient_accumulation(O.Adam)(0.1, grad_accum_steps=2)
    ws, states = run_lsq(opt, MICRO)
    np.testing.assert_allclose(ws[-1], [0.29103307, -0.00040825], atol=1e-6)
    # T4: a micro-step bias-correction counter would give these values; we must not.
    assert not np.allclose(ws[-1], [0.23462294, -0.06297819], atol=1e-3)
    assert int(opt.iterations) == 2
    # Micro-steps 1 and 3 change nothing but the accumulators and the counter.
    assert np.array_equal(ws[0], W0) and np.array_equal(ws[2], ws[1])
    moments = [k for k in slots(states[0]) if k.endswith(("w_m", "w_v"))]
    assert len(moments) == 2 and not any(np.any(slots(states[0])[k]) for k in moments)
    for name, value in slots(states[1]).items():
        assert np.array_equal(value, slots(states[2])[name]), name


def test_keras_adam_formula_reference():
    """Keras's Adam (ε=1e-7, ε outside the bias correction): 2 full-batch steps of the problem above."""
    big, _ = run_lsq(keras.optimizers.Adam(0.1), FULL)
    # Keras computes 1-β2^t in float32 (0.002 with 3e-5 relative error): hence 3e-6.
    np.testing.assert_allclose(big[-1], [0.29103276, -0.00040845], atol=3e-6)


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_accumulation_inside_fit(opt_name):
    Base = keras.optimizers.SGD if opt_name == "sgd" else O.Adam
    expected = [0.25459375, 0.11134375] if opt_name == "sgd" else [0.29103307, -0.00040825]
    opt = O.extend_with_gradient_accumulation(Base)(0.1, grad_accum_steps=2)
    model = lsq_model(opt)
    model.fit(X, Y[:, None], batch_size=2, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(to_np(model.weights[0])[:, 0], expected, atol=1e-6)
    assert int(opt.iterations) == 2


def _t3_optimizers():
    return {
        "sgd": (keras.optimizers.SGD, dict(learning_rate=0.1)),
        "momentum": (keras.optimizers.SGD, dict(learning_rate=0.1, momentum=0.9)),
        "adam": (keras.optimizers.Adam, dict(learning_rate=0.01)),
        "adamw": (keras.optimizers.AdamW, dict(learning_rate=0.01, weight_decay=0.1)),
        "adafactor": (O.AdaFactor, dict(learning_rate=0.01, min_dim_size_to_factor=2, beta1=0.5)),
    }


@pytest.mark.parametrize("key", list(_t3_optimizers()))
def test_accumulation_equals_large_batch_for_three_macro_steps(key):
    Base, kwargs = _t3_optimizers()[key]
    n, b = 2, 4
    x, y = data(3 * n * b)
    big, small = mlp(), mlp()
    big.compile(optimizer=Base(**kwargs), loss="mse")
    accum = O.extend_with_gradient_accumulation(Base, name=f"T3{key}")(grad_accum_steps=n, **kwargs)
    small.compile(optimizer=accum, loss="mse")
    big.fit(x, y, batch_size=n * b, shuffle=False, verbose=0)
    small.fit(x, y, batch_size=b, shuffle=False, verbose=0)
    for a, c in zip(big.weights, small.weights):
        np.testing.assert_allclose(to_np(a), to_np(c), rtol=1e-5, atol=1e-6)
    state = {v.name: to_np(v) for v in accum.variables}
    compared = 0
    for v in big.optimizer.variables:
        if v.name not in ("iteration", "learning_rate"):
            np.testing.assert_allclose(to_np(v), state[v.name], rtol=1e-5, atol=1e-7)
            compared += 1
    assert compared >= (0 if key == "sgd" else 4)
    assert int(accum.iterations) == 3 and int(big.optimizer.iterations) == 3


def test_accumulation_state_round_trip_mid_cycle():
    Accum = O.extend_with_gradient_accumulation(O.Adam)
    straight, _ = run_lsq(Accum(0.1, grad_accum_steps=2), MICRO[:3])

    w = keras.Variable(W0, name="w")
    first = Accum(0.1, grad_accum_steps=2)
    apply(first, [lsq_grad(W0, MICRO[0])], [w])
    saved = [to_np(v) for v in first.variables]
    w2 = keras.Variable(to_np(w), name="w")
    resumed = Accum(0.1, grad_accum_steps=2)
    resumed.build([w2])
    resumed.set_weights(saved)
    for sl in MICRO[1:3]:
        apply(resumed, [lsq_grad(to_np(w2), sl)], [w2])
    assert np.array_equal(to_np(w2), straight[-1])


def test_accumulation_config_and_k1_passthrough():
    Accum = O.extend_with_gradient_accumulation(O.Adam, name="AdamAcc")
    opt = Accum(0.1, grad_accum_steps=3)
    config = opt.get_config()
    assert config["grad_accum_steps"] == 3 and "gradient_accumulation_steps" not in config
    clone = Accum.from_config(config)
    assert clone.get_config() == config and clone.gradient_accumulation_steps == 3
    assert keras.optimizers.deserialize(keras.optimizers.serialize(opt)).grad_accum_steps == 3
    one, _ = run_lsq(Accum(0.1, grad_accum_steps=1), FULL)
    base, _ = run_lsq(O.Adam(0.1), FULL)
    assert np.array_equal(one[-1], base[-1])
    assert O.AccumOptimizer(O.Adam(0.1), 2).grad_accum_steps == 2


def test_accumulation_lr_schedule_counts_applied_updates():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    opt = O.extend_with_gradient_accumulation(keras.optimizers.SGD)(schedule, grad_accum_steps=2)
    w = keras.Variable(W0, name="w")
    for _ in range(4):
        apply(opt, [np.ones(2)], [w])
    assert int(opt.iterations) == 2
    np.testing.assert_allclose(num(opt.learning_rate), 0.025, rtol=1e-6)
    np.testing.assert_allclose(to_np(w), W0 - (0.1 + 0.05), rtol=1e-6)  # lr 0.1 then 0.05


@pytest.mark.parametrize("steps", [0, -1, 1.5, True, "2"])
def test_bad_grad_accum_steps(steps):
    with pytest.raises(ValueError, match="grad_accum_steps"):
        O.extend_with_gradient_accumulation(O.Adam)(grad_accum_steps=steps)


# --------------------------------------------------------------------------- learning-rate schedules


def test_reparameterisation_sgd_and_adam():
    theta = keras.Variable(1.0)
    apply(keras.optimizers.SGD(0.4), [to_np(theta) - 3.0], [theta])
    assert num(theta) == pytest.approx(1.8)
    lam, phi = 2.0, keras.Variable(0.5)
    apply(keras.optimizers.SGD(0.1), [lam * (lam * to_np(phi) - 3.0)], [phi])
    assert num(phi) == pytest.approx(0.9) and lam * num(phi) == pytest.approx(1.8)

    rng = np.random.RandomState(0)
    a, c = rng.uniform(0.5, 2, 5), rng.randn(5)
    for lam in (0.3, 2.0):
        alpha, eps = 1e-2, 1e-6
        th0 = rng.randn(5)
        phi, theta, same_eps = (keras.Variable(v.astype("float32")) for v in (th0 / lam, th0, th0))
        on_phi = O.Adam(alpha, epsilon=eps)
        on_theta, plain = O.Adam(lam * alpha, epsilon=eps / lam), O.Adam(lam * alpha, epsilon=eps)
        for _ in range(10):
            apply(on_phi, [lam * a * (lam * to_np(phi) - c)], [phi])
            apply(on_theta, [a * (to_np(theta) - c)], [theta])
            apply(plain, [a * (to_np(same_eps) - c)], [same_eps])
        np.testing.assert_allclose(lam * to_np(phi), to_np(theta), rtol=1e-6)
        assert np.max(np.abs(to_np(same_eps) - to_np(theta))) < 1e-3 * alpha * 10


def _two_dense():
    a, b = keras.layers.Dense(2, name="dense_a"), keras.layers.Dense(2, name="dense_b")
    a.build((None, 3))
    b.build((None, 3))
    return [a.kernel, a.bias, b.kernel, b.bias]


def test_parameter_wise_lr():
    rng = np.random.RandomState(0)
    grads = [rng.randn(*v.shape) for v in _two_dense()]
    init = [rng.randn(*v.shape) for v in _two_dense()]

    def one_step(opt, start=None):
        """Deltas of one step; from zero weights by default so that deltas are exact in float32."""
        variables = _two_dense()
        start = start or [np.zeros(v.shape, "float32") for v in variables]
        for v, x in zip(variables, start):
            v.assign(x)
        apply(opt, grads, variables)
        return [to_np(v) - x.astype("float32") for v, x in zip(variables, start)], variables

    base, _ = one_step(O.Adam(1e-3))
    PW = O.extend_with_parameter_wise_lr(O.Adam)
    scaled, variables = one_step(PW(1e-3, paramwise_lr_schedule={"dense_a": 0.1}))
    assert variables[0].path == "dense_a/kernel"
    np.testing.assert_allclose(scaled[0], 0.1 * base[0], rtol=1e-6)
    np.testing.assert_allclose(scaled[1], 0.1 * base[1], rtol=1e-6)
    assert np.array_equal(scaled[2], base[2]) and np.array_equal(scaled[3], base[3])
    frozen, _ = one_step(PW(1e-3, paramwise_lr_schedule={"dense_a": 0}), start=init)
    assert not np.any(frozen[0]) and not np.any(frozen[1])
    both, _ = one_step(PW(1e-3, paramwise_lr_schedule={"dense": 0.5, "dense_b": 2}))
    np.testing.assert_allclose(both[2], base[2], rtol=1e-6)
    np.testing.assert_allclose(both[0], 0.5 * base[0], rtol=1e-6)
    with pytest.warns(UserWarning, match="Transformer-3"):
        one_step(PW(1e-3, paramwise_lr_schedule={"Transformer-3": 2}))
    with pytest.raises(TypeError, match="key"):
        PW(paramwise_lr_schedule={3: 1.0})


def test_piecewise_linear_values():
    schedule = {1000: 1, 2000: 0.1}
    got = [float(piecewise_linear(t, schedule)) for t in (0, 500, 1000, 1500, 2000, 3000)]
    np.testing.assert_allclose(got, [0.0, 0.5, 1.0, 0.55, 0.1, 0.1], rtol=1e-6, atol=1e-7)
    assert float(piecewise_linear(500, schedule, from_zero=False)) == pytest.approx(1.0)
    assert all(float(piecewise_linear(t, {0: 1})) == 1.0 for t in (0, 7, 10**6))


def test_piecewise_linear_lr_scales_updates_per_applied_step():
    PLR = O.extend_with_piecewise_linear_lr(keras.optimizers.SGD)
    opt = PLR(0.1, lr_schedule={2: 1})
    w, seen = keras.Variable(0.0), []
    for _ in range(3):
        apply(opt, [1.0], [w])
        seen.append(num(w))
    np.testing.assert_allclose(seen, [0.0, -0.05, -0.15], atol=1e-7)
    clone = PLR.from_config(opt.get_config())
    assert clone.lr_schedule == {2: 1.0}
    assert PLR(0.1, lr_schedule={"2000": 0.1, "1000": 1}).lr_schedule == {1000: 1.0, 2000: 0.1}


@pytest.mark.parametrize(
    "schedule, error, match",
    [
        ({-1: 1}, ValueError, "non-negative"),
        ({1000: 1, "1000": 0.5}, ValueError, "more than once"),
        ({1.5: 1}, ValueError, "non-negative integer"),
        ({}, ValueError, "empty"),
        ({"x": 1}, ValueError, "not a number"),
        ({10: float("nan")}, ValueError, "finite"),
        ([(0, 1)], TypeError, "dict"),
    ],
)
def test_bad_lr_schedule(schedule, error, match):
    with pytest.raises(error, match=match):
        O.extend_with_piecewise_linear_lr(O.Adam)(lr_schedule=schedule)


def test_weight_decay_with_exclusions():
    variables = _two_dense()
    for v in variables:
        v.assign(np.full(v.shape, 2.0))
    opt = O.extend_with_weight_decay(keras.optimizers.SGD)(
        0.1, weight_decay_rate=0.01, exclude_from_weight_decay=["bias", "dense_b"]
    )
    apply(opt, [np.zeros(v.shape) for v in variables], variables)
    np.testing.assert_allclose(to_np(variables[0]), 2.0 * (1 - 0.001), rtol=1e-7)
    assert np.all(to_np(variables[1]) == 2.0) and np.all(to_np(variables[2]) == 2.0)
    # The decay uses the scheduled rate: 0 at step 0, 0.05 at step 1 with {2: 1}.
    scheduled = O.extend_with_piecewise_linear_lr(O.extend_with_weight_decay(keras.optimizers.SGD))(
        0.1, weight_decay_rate=0.01, lr_schedule={2: 1}
    )
    w, seen = keras.Variable(2.0), []
    for _ in range(2):
        apply(scheduled, [0.0], [w])
        seen.append(num(w))
    np.testing.assert_allclose(seen, [2.0, 2.0 * (1 - 0.0005)], rtol=1e-7)
    with pytest.raises(ValueError, match=r"'\('"):
        O.extend_with_weight_decay(O.Adam)(exclude_from_weight_decay=["("])


def test_layer_adaptation_trust_ratio():
    variables = _two_dense()
    rng = np.random.RandomState(0)
    for v in variables:
        v.assign(rng.randn(*v.shape))
    before = [to_np(v) for v in variables]
    grads = [rng.randn(*v.shape) for v in variables]
    grads[3] = np.zeros(2)
    opt = O.extend_with_layer_adaptation(O.Adam)(1e-2, exclude_from_layer_adaptation=["dense_b/kernel"])
    apply(opt, grads, variables)
    step = [to_np(v) - b for v, b in zip(variables, before)]
    for i in (0, 1):
        np.testing.assert_allclose(np.linalg.norm(step[i]), 1e-2 * np.linalg.norm(before[i]), rtol=1e-5)
    np.testing.assert_allclose(np.abs(step[2]), 1e-2, rtol=1e-3)  # first Adam step ≈ lr·sign(g)
    assert not np.any(step[3])


def l1_clip(grads, variables):
    return [g / ops.maximum(1.0, ops.sum(ops.abs(g))) for g in grads]


keras.saving.register_keras_serializable(package="bert4keras_tests")(l1_clip)


def test_gradient_transform():
    GT = O.extend_with_gradient_transform(keras.optimizers.SGD)
    x, y = data(8)
    model = mlp()
    before = model.get_weights()
    zeros = GT(0.1, gradient_transform=lambda g, v: [ops.zeros_like(t) for t in g])
    model.compile(optimizer=zeros, loss="mse")
    model.fit(x, y, batch_size=4, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))

    rng = np.random.RandomState(0)
    grads = [rng.randn(3, 2) * 3, rng.randn(2) * 0.1]
    init = [rng.randn(3, 2), rng.randn(2)]
    got = [keras.Variable(v.astype("float32")) for v in init]
    opt = GT(0.1, gradient_transform=l1_clip)
    apply(opt, grads, got)
    clipped = [g / max(1.0, np.abs(g).sum()) for g in grads]
    for v, x0, g in zip(got, init, clipped):
        np.testing.assert_allclose(to_np(v), x0 - 0.1 * g, rtol=1e-5, atol=1e-7)
    assert GT.from_config(opt.get_config()).gradient_transform is l1_clip


# --------------------------------------------------------------------------- EMA


def ema_run(trajectory_grads, momentum, w0=0.0):
    opt = O.extend_with_exponential_moving_average(keras.optimizers.SGD)(1.0, ema_momentum=momentum)
    w = keras.Variable(w0)
    for g in trajectory_grads:
        apply(opt, [g], [w])
    return opt, w


def test_ema_reference_values():
    opt, w = ema_run([-1.0, -1.0, -2.0], 0.5)  # θ = 1, 2, 4
    assert num(w) == 4.0
    opt.apply_ema_weights()
    assert num(w) == pytest.approx(3.0, abs=1e-6)
    opt.reset_old_weights()
    assert num(w) == 4.0
    opt.apply_ema_weights(bias_correction=False)
    assert num(w) == pytest.approx(2.625, abs=1e-6)
    opt.reset_old_weights()
    opt, w = ema_run([0.0] * 7, 0.999, w0=3.0)
    opt.apply_ema_weights()
    assert num(w) == pytest.approx(3.0, rel=1e-6)


def test_ema_does_not_change_the_trajectory_inside_fit():
    x, y = data(20)
    plain, ema = mlp(), mlp()
    plain.compile(optimizer=O.Adam(1e-2), loss="mse")
    EMA = O.extend_with_exponential_moving_average(O.Adam)
    ema.compile(optimizer=EMA(1e-2, ema_momentum=0.9), loss="mse")
    plain.fit(x, y, batch_size=1, shuffle=False, verbose=0)
    ema.fit(x, y, batch_size=1, shuffle=False, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(plain.get_weights(), ema.get_weights()))
    assert int(ema.optimizer.iterations) == 20


def test_ema_apply_reset_round_trip_and_edge_cases():
    mu = 0.9
    opt = O.extend_with_exponential_moving_average(O.Adam)(0.1, ema_momentum=mu)
    variables = _two_dense()
    with pytest.raises(ValueError, match="no update"):
        opt.apply_ema_weights()
    rng = np.random.RandomState(0)
    trajectory = []
    for _ in range(5):
        apply(opt, [rng.randn(*v.shape) for v in variables], variables)
        trajectory.append([to_np(v) for v in variables])
    w0 = [to_np(v) for v in variables]
    expected = [np.zeros_like(w) for w in w0]
    for weights in trajectory:
        expected = [mu * e + (1 - mu) * w for e, w in zip(expected, weights)]
    opt.apply_ema_weights()
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(to_np(v), e / (1 - mu**5), rtol=1e-5, atol=1e-7)
    with pytest.raises(RuntimeError, match="already applied"):
        opt.apply_ema_weights()
    opt.reset_old_weights()
    assert all(np.array_equal(to_np(v), w) for v, w in zip(variables, w0))
    with pytest.raises(RuntimeError, match="has not been called"):
        opt.reset_old_weights()


def test_ema_updates_only_on_applied_steps():
    Opt = O.extend_with_gradient_accumulation(O.extend_with_exponential_moving_average(keras.optimizers.SGD))
    opt = Opt(1.0, ema_momentum=0.5, grad_accum_steps=2)
    w = keras.Variable(0.0)
    for g in [-1.0, -1.0, -2.0, -2.0, -4.0, -4.0]:
        apply(opt, [g], [w])
    assert int(opt.iterations) == 3 and num(w) == 7.0  # θ = 1, 3, 7
    opt.apply_ema_weights(bias_correction=False)
    assert num(w) == pytest.approx(0.5 * (0.25 * 1 + 0.5 * 3 + 7))
    opt.reset_old_weights()


# --------------------------------------------------------------------------- AdaX (arXiv:2004.09740)


def test_adax_two_steps():
    opt = O.AdaX(1e-3)
    w = keras.Variable(np.array([1.0, -2.0, 0.5], "float32"))
    apply(opt, [[0.1, -0.2, 0.3]], [w])
    np.testing.assert_allclose(to_np(w), [0.999900001, -1.9999000005, 0.4999000003], atol=1e-7)
    apply(opt, [[0.05, 0.1, -0.4]], [w])
    np.testing.assert_allclose(to_np(w), [0.9997229183, -1.9998494051, 0.49993677], atol=1e-7)
    m, v = (to_np(s) for s in opt.variables[2:4])
    np.testing.assert_allclose(m, [0.014, -0.008, -0.013], rtol=1e-5)
    np.testing.assert_allclose(v, [1.25010e-06, 5.00040e-06, 2.50009e-05], rtol=1e-5)


def test_adax_constant_gradient_and_recursion():
    opt = O.AdaX(1e-3)
    w = keras.Variable(1.0)
    for t in range(1, 4):
        apply(opt, [0.5], [w])
        v_hat = num(opt.variables[3]) / ((1 + 1e-4) ** t - 1)
        assert v_hat == pytest.approx(0.25, rel=1e-5)
    assert num(w) == pytest.approx(0.9994390011, abs=1e-7)

    b2 = 1e-4

    def beta_hat(t):
        return 1 - b2 / ((1 + b2) ** t - 1)

    assert abs(beta_hat(1)) < 1e-12
    got = [beta_hat(2), beta_hat(10), beta_hat(1000)]
    np.testing.assert_allclose(got, [0.500025, 0.900045, 0.999049], rtol=1e-6)
    opt = O.AdaX(1e-3)
    w = keras.Variable(np.zeros(4, "float32"))
    rng = np.random.RandomState(0)
    recursion = np.zeros(4)
    for t in range(1, 6):
        g = rng.randn(4)
        apply(opt, [g], [w])
        recursion = beta_hat(t) * recursion + (1 - beta_hat(t)) * g**2
        direct = to_np(opt.variables[3]) / ((1 + b2) ** t - 1)
        np.testing.assert_allclose(direct, recursion, rtol=1e-4)
    with pytest.raises(ValueError, match="beta_2"):
        O.AdaX(beta_2=0.0)


# --------------------------------------------------------------------------- AdaFactor (arXiv:1804.04235)

THETA = np.array([[0.5, -1.0], [2.0, 0.1], [-0.3, 0.7]], "float32")
G = np.array([[0.1, 0.2], [-0.3, 0.05], [0.4, -0.1]], "float32")


def adafactor_step(opt, theta=THETA, grads=(G,)):
    w = keras.Variable(theta, name="kernel")
    for g in grads:
        apply(opt, [g], [w])
    return to_np(w), {v.name.split("_")[-1]: to_np(v) for v in opt.variables[2:]}


def test_adafactor_unfactored_first_step():
    rms = np.sqrt(np.mean(THETA.astype("float64") ** 2))
    assert rms == pytest.approx(0.9865765725)
    w, state = adafactor_step(O.AdaFactor())
    expected = [[0.4990134234, -1.0009865766], [2.0009865766, 0.0990134234], [-0.3009865766, 0.7009865766]]
    np.testing.assert_allclose(w, expected, atol=1e-7)
    assert set(state) == {"v"}


def test_adafactor_factored_two_steps():
    w1, state = adafactor_step(O.AdaFactor(min_dim_size_to_factor=2))
    np.testing.assert_allclose(state["vr"], [[0.0866666667, 0.0175]], rtol=1e-6)
    np.testing.assert_allclose(state["vc"], [[0.025], [0.04625], [0.085]], rtol=1e-6)
    np.testing.assert_allclose(
        w1,
        [[0.4995761384, -1.0018865184], [2.0009348876, 0.099653251], [-0.3009194848, 0.7005115541]],
        atol=1e-7,
    )
    w2, _ = adafactor_step(O.AdaFactor(min_dim_size_to_factor=2), grads=(G, G))
    np.testing.assert_allclose(
        w2,
        [[0.499151976, -1.0037743758], [2.0018704388, 0.0993062559], [-0.3018396223, 0.7010234713]],
        atol=1e-7,
    )


def test_adafactor_rank_one_gradient_is_exact():
    g = np.outer([1, -2, 0.5], [0.3, -0.4]).astype("float32")
    w, state = adafactor_step(O.AdaFactor(min_dim_size_to_factor=2), grads=(g,))
    v = state["vr"] * state["vc"] / state["vr"].mean(axis=1, keepdims=True)
    np.testing.assert_allclose(v, g.astype("float64") ** 2, rtol=1e-5)
    rms = np.sqrt(np.mean(THETA**2))
    np.testing.assert_allclose(w, THETA - 1e-3 * np.sign(g) * rms, atol=1e-7)


def test_adafactor_default_schedules():
    opt = O.AdaFactor(learning_rate=None)
    no_scale = O.AdaFactor(learning_rate=None, multiply_by_parameter_scale=False)
    for it, lr in ((0, 0.01), (9999, 0.01), (19999, 0.0070710678)):
        opt.iterations.assign(it)
        no_scale.iterations.assign(it)
        assert num(opt.learning_rate) == pytest.approx(lr, rel=1e-6)
        assert num(no_scale.learning_rate) == pytest.approx(0.05 * lr, rel=1e-6)
    for t, beta in ((1, 0.0), (4, 0.6701230223), (100, 0.9748811357)):
        opt.iterations.assign(t - 1)
        assert num(opt.beta2) == pytest.approx(beta, abs=1e-7)
    assert opt.get_config()["learning_rate"] is None
    assert O.AdaFactor.from_config(opt.get_config()).get_config() == opt.get_config()


def test_adafactor_clipping_and_momentum():
    rms = np.sqrt(np.mean(THETA**2))
    # constant beta2 = 0.9375: u = sign(g)/sqrt(1 - 0.9375) has RMS 4.
    clipped, _ = adafactor_step(O.AdaFactor(beta2=0.9375))
    np.testing.assert_allclose(clipped, THETA - 1e-3 * np.sign(G) * rms, atol=1e-7)
    unclipped, _ = adafactor_step(O.AdaFactor(beta2=0.9375, clipping_threshold=None))
    np.testing.assert_allclose(unclipped, THETA - 4e-3 * np.sign(G) * rms, atol=1e-7)
    w, state = adafactor_step(O.AdaFactor(beta1=0.9))
    np.testing.assert_allclose(state["m"], 0.1 * np.sign(G), rtol=1e-6)
    np.testing.assert_allclose(w, THETA - 1e-4 * np.sign(G) * rms, atol=1e-7)


def test_adafactor_slot_shapes_and_edge_cases():
    opt = O.AdaFactor()
    variables = [keras.Variable(np.zeros(s, "float32"), name=n) for s, n in
                 (((256, 512), "a"), ((4096, 64), "b"), ((768,), "c"))]
    opt.build(variables)
    shapes = {v.name: tuple(v.shape) for v in opt.variables[2:]}
    assert shapes == {"a_vr": (256, 1), "a_vc": (1, 512), "b_v": (4096, 64), "c_v": (768,)}
    w, _ = adafactor_step(O.AdaFactor(), theta=np.zeros((3, 2), "float32"))
    np.testing.assert_allclose(w, -1e-3 * np.sign(G) * 1e-3, atol=1e-10)  # RMS(0) -> epsilon2
    w, _ = adafactor_step(O.AdaFactor(), grads=(np.zeros((3, 2)),))
    assert np.array_equal(w, THETA)
    excluded, _ = adafactor_step(O.AdaFactor(exclude_from_parameter_scale=["kernel"]))
    np.testing.assert_allclose(excluded, THETA - 1e-3 * np.sign(G), atol=1e-7)


# --------------------------------------------------------------------------- other optimizers, extensions


def test_bert4keras_adam_without_bias_correction_and_lion():
    w = keras.Variable(np.array([1.0, -1.0], "float32"))
    apply(O.Adam(0.1, bias_correction=False), [[0.5, -2.0]], [w])
    g = np.array([0.5, -2.0])
    expected = [1.0, -1.0] - 0.1 * 0.1 * g / (np.sqrt(0.001) * np.abs(g) + 1e-6)  # m, v not corrected
    np.testing.assert_allclose(to_np(w), expected, rtol=1e-6)
    opt = O.Lion()
    assert (opt.beta_1, opt.beta_2, num(opt.learning_rate)) == (0.95, 0.98, pytest.approx(3e-4))
    w = keras.Variable(np.array([1.0, -1.0], "float32"))
    apply(opt, [[0.5, -2.0]], [w])
    apply(opt, [[-0.5, 0.1]], [w])
    m = 0.02 * g
    g2 = np.array([-0.5, 0.1])
    expected = [1.0, -1.0] - 3e-4 * np.sign(0.05 * g) - 3e-4 * np.sign(0.95 * m + 0.05 * g2)
    np.testing.assert_allclose(to_np(w), expected, rtol=1e-6)


def test_lookahead_and_lazy_optimization():
    opt = O.extend_with_lookahead(keras.optimizers.SGD)(0.1, steps_per_slow_update=2, slow_step_size=0.5)
    w, seen = keras.Variable(1.0), []
    for _ in range(4):
        apply(opt, [1.0], [w])
        seen.append(num(w))
    np.testing.assert_allclose(seen, [0.9, 0.9, 0.8, 0.8], atol=1e-6)

    Lazy = O.extend_with_lazy_optimization(O.Adam)
    grads = [np.array([[1.0, 1.0], [1.0, -1.0], [0.0, 0.0]]), np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])]
    moved = {}
    for lazy in (True, False):
        opt = Lazy(0.1, include_in_lazy_optimization=["embeddings"] if lazy else [])
        table = keras.Variable(np.zeros((3, 2), "float32"), name="embeddings")
        apply(opt, [grads[0]], [table])
        before = to_np(table)
        apply(opt, [grads[1]], [table])
        moved[lazy] = np.any(to_np(table) != before, axis=1)
    assert moved[True].tolist() == [False, True, False]
    assert moved[False].tolist() == [True, True, False]


@pytest.mark.parametrize("Base", [O.Adam, O.AdaX, O.Lion, O.AdaFactor, keras.optimizers.RMSprop])
def test_optimizers_train_inside_fit(Base):
    x, y = data(16)
    model = mlp()
    kwargs = {"learning_rate": None} if Base is O.AdaFactor else {}
    model.compile(optimizer=O.extend_with_piecewise_linear_lr(O.extend_with_weight_decay(Base))(
        lr_schedule={2: 1}, **kwargs), loss="mse")
    losses = model.fit(x, y, batch_size=4, epochs=3, verbose=0).history["loss"]
    assert np.isfinite(losses[-1]) and losses[-1] < losses[0]


def test_stacked_extensions_fit_save_and_reload(tmp_path):
    Opt = O.extend_with_weight_decay(O.AdaFactor)
    for extend in (O.extend_with_piecewise_linear_lr, O.extend_with_layer_adaptation, O.extend_with_lookahead,
                   O.extend_with_lazy_optimization, O.extend_with_exponential_moving_average,
                   O.extend_with_parameter_wise_lr, O.extend_with_gradient_accumulation):
        Opt = extend(Opt)
    Opt = O.extend_with_gradient_transform(Opt, name="KitchenSink")
    opt = Opt(
        learning_rate=1e-2, min_dim_size_to_factor=2,
        weight_decay_rate=0.01, exclude_from_weight_decay=["bias"],
        lr_schedule={2: 1, 10: 0.5}, steps_per_slow_update=2, include_in_lazy_optimization=["h/kernel"],
        ema_momentum=0.9, paramwise_lr_schedule={"o/": 0.5}, grad_accum_steps=2, gradient_transform=l1_clip,
    )
    x, y = data(16)
    model = mlp()
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert int(opt.iterations) == 4 and type(opt).__name__ == "KitchenSink"
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is Opt and loaded.optimizer.get_config() == opt.get_config()
    assert [v.path for v in loaded.optimizer.variables] == [v.path for v in opt.variables]
    for a, b in zip(opt.variables, loaded.optimizer.variables):
        assert np.array_equal(to_np(a), to_np(b)), a.path
    loaded.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    opt.apply_ema_weights()
    assert np.isfinite(model.predict(x, verbose=0)).all()
    opt.reset_old_weights()


def test_extension_classes_are_named_registered_and_aliased():
    AdamW = O.extend_with_weight_decay(O.Adam, name="AdamW")
    assert AdamW.__name__ == "AdamW" and keras.saving.get_registered_object("bert4keras>AdamW") is AdamW
    assert O.extend_with_weight_decay(O.Adam).__name__ == "AdamWeightDecay"
    opt = AdamW(1e-3, weight_decay_rate=0.1, exclude_from_weight_decay=["Norm"])
    assert isinstance(keras.optimizers.deserialize(keras.optimizers.serialize(opt)), AdamW)
    for name in ("weight_decay", "layer_adaptation", "piecewise_linear_lr", "gradient_accumulation",
                 "lookahead", "lazy_optimization", "exponential_moving_average", "parameter_wise_lr"):
        assert getattr(O, f"extend_with_{name}_v2") is getattr(O, f"extend_with_{name}")
    assert O.AdaFactorV1 is O.AdaFactor and O.LionV2 is O.Lion
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        O.extend_with_lookahead(O.Adam, name="AdamW")
    assert any("AdamW" in str(w.message) for w in caught)


@pytest.mark.parametrize("bad", [O.Adam(), "Adam", dict, None])
def test_extensions_reject_non_optimizer_classes(bad):
    match = "instance of Adam" if isinstance(bad, keras.optimizers.Optimizer) else "Optimizer subclass"
    with pytest.raises(TypeError, match=match):
        O.extend_with_exponential_moving_average(bad)
    with pytest.raises(ValueError, match="identifier"):
        O.extend_with_lookahead(O.Adam, name="not a name")


def test_bad_extension_arguments():
    with pytest.raises(ValueError, match="ema_momentum"):
        O.extend_with_exponential_moving_average(O.Adam)(ema_momentum=1.0)
    with pytest.raises(ValueError, match="steps_per_slow_update"):
        O.extend_with_lookahead(O.Adam)(steps_per_slow_update=0)
    with pytest.raises(ValueError, match="grad_accum_steps only"):
        O.extend_with_gradient_accumulation(O.Adam)(gradient_accumulation_steps=4)
    with pytest.raises(ValueError, match="use_ema"):
        O.extend_with_gradient_accumulation(O.Adam)(use_ema=True)
    with pytest.raises(TypeError, match="callable"):
        O.extend_with_gradient_transform(O.Adam)(gradient_transform=3)
    with pytest.raises(ValueError, match="already built"):
        opt = O.Adam()
        opt.build([keras.Variable(1.0)])
        O.AccumOptimizer(opt, 2)
    assert math.isfinite(num(O.Adam().learning_rate))


# --------------------------------------------------------------------------- Keras 2 / 0.11.5 names


@pytest.mark.parametrize("cls", [O.Adam, O.AdaX, O.Lion, O.AdaFactor, O.AdaFactorV2, O.LionV2])
def test_lr_is_an_alias_of_learning_rate(cls):
    opt = cls(lr=0.125)
    assert num(opt.learning_rate) == 0.125
    assert cls.from_config(opt.get_config()).get_config()["learning_rate"] == 0.125
    with pytest.raises(ValueError, match="not both"):
        cls(learning_rate=0.5, lr=0.125)


def test_lr_alias_through_extensions_and_training():
    AdamW = O.extend_with_piecewise_linear_lr(O.extend_with_weight_decay(O.Adam), name="AdamWLRAlias")
    opt = AdamW(lr=0.01, weight_decay_rate=0.0, lr_schedule={0: 1})
    w = keras.Variable(np.array([1.0, -1.0], "float32"))
    apply(opt, [[1.0, 1.0]], [w])
    np.testing.assert_allclose(to_np(w), [0.99, -1.01], rtol=1e-5)  # Adam's first step moves lr·sign(g)


def test_k_set_value_on_the_learning_rate():
    from bert4keras.backend import K

    opt = O.Adam(lr=0.01)
    K.set_value(opt.learning_rate, 0.001)
    assert abs(float(K.get_value(opt.learning_rate)) - 0.001) < 1e-9
    w = keras.Variable(np.array([1.0], "float32"))
    apply(opt, [[1.0]], [w])
    np.testing.assert_allclose(to_np(w), [0.999], rtol=1e-6)
    scheduled = O.extend_with_piecewise_linear_lr(O.Adam, name="AdamLRForSetValue")(lr_schedule={10: 1})
    with pytest.raises(TypeError, match="learning_rate"):
        K.set_value(scheduled.learning_rate, 0.1)


def test_adafactor_base_is_the_shared_base():
    assert issubclass(O.AdaFactor, O.AdaFactorBase)
    base = O.AdaFactorBase(learning_rate=None, min_dim_size_to_factor=4)
    assert base.factored_shape((8, 16)) == ((8, 1), 1, (1, 16), 0)
    assert base.factored_shape((3, 16)) is None
    assert base.get_config()["learning_rate"] is None


def test_export_to_custom_objects():
    @O.export_to_custom_objects
    def extend_with_halved_steps(BaseOptimizer):
        class Halved(BaseOptimizer):
            def update_step(self, gradient, variable, learning_rate):
                super().update_step(gradient, variable, learning_rate * 0.5)

        return Halved

    cls = extend_with_halved_steps(keras.optimizers.SGD, name="HalvedSGD")
    assert cls.__name__ == "HalvedSGD"
    assert keras.saving.get_custom_objects()["HalvedSGD"] is cls
    w = keras.Variable(np.array([1.0], "float32"))
    apply(cls(learning_rate=0.1), [[1.0]], [w])
    np.testing.assert_allclose(to_np(w), [0.95])
    with pytest.raises(ValueError, match="identifier"):
        extend_with_halved_steps(keras.optimizers.SGD, name="not a name")


def test_lr_attribute_is_the_learning_rate_variable():
    """Keras 2 scripts read and set ``optimizer.lr`` (``K.set_value(model.optimizer.lr, x)``)."""
    from bert4keras.backend import K
    from bert4keras.optimizers import AdaFactor, Adam, extend_with_weight_decay

    for optimizer in (Adam(lr=0.01), AdaFactor(lr=0.01),
                      extend_with_weight_decay(keras.optimizers.SGD)(lr=0.01, weight_decay_rate=0.1)):
        assert optimizer.lr is optimizer.learning_rate
        K.set_value(optimizer.lr, 0.5)
        np.testing.assert_allclose(K.get_value(optimizer.learning_rate), 0.5)
