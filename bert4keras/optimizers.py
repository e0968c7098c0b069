"""Optimizers: bert4keras's Adam, AdaFactor, AdaX and Lion, and the ``extend_with_*`` family.

Each ``extend_with_*`` takes an optimizer *class* and returns a subclass, so the
extensions stack (``extend_with_piecewise_linear_lr(extend_with_weight_decay(AdaFactor))``)
and the result works in ``model.compile`` / ``model.fit`` on every backend. The
per-variable extensions rewrite the value the base update step proposes, exactly
like bert4keras's ``K.update`` interception: see ``docs/optimizers.md``.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from typing import Callable, Iterable, Mapping, Sequence

import keras
import numpy as np
from keras import ops

from bert4keras import kernels
from bert4keras._keras2_compat import Keras2OptimizerMixin, LearningRateAlias
from bert4keras.backend import piecewise_linear, root_mean_square

__all__ = [
    "Adam", "AdaFactor", "AdaFactorBase", "AdaFactorV1", "AdaFactorV2", "AdaX", "Lion", "LionV2",
    "AccumOptimizer", "custom_objects",
    "extend_with_weight_decay", "extend_with_weight_decay_v2",
    "extend_with_layer_adaptation", "extend_with_layer_adaptation_v2",
    "extend_with_piecewise_linear_lr", "extend_with_piecewise_linear_lr_v2",
    "extend_with_gradient_accumulation", "extend_with_gradient_accumulation_v2",
    "extend_with_lookahead", "extend_with_lookahead_v2",
    "extend_with_lazy_optimization", "extend_with_lazy_optimization_v2",
    "extend_with_exponential_moving_average", "extend_with_exponential_moving_average_v2",
    "extend_with_parameter_wise_lr", "extend_with_parameter_wise_lr_v2",
    "extend_with_gradient_transform", "export_to_custom_objects",
]

_register = keras.saving.register_keras_serializable(package="bert4keras")


# --------------------------------------------------------------------------- helpers


def _dtype_cast(x, variable):
    return ops.cast(x, variable.dtype)


def _one_minus_power(beta: float, t):
    """``1 - beta^t`` as ``-expm1(t·log beta)``: no cancellation in float32 when beta^t is near 1."""
    if beta == 0:
        return ops.ones_like(t)
    return -ops.expm1(t * math.log(beta))


class _Patterns:
    """Regexes searched (``re.search``) in ``variable.path``; compiled once so bad ones fail early."""

    def __init__(self, patterns: str | Iterable[str] | None, what: str):
        if patterns is None:
            patterns = []
        elif isinstance(patterns, str):
            patterns = [patterns]
        self.patterns = list(patterns)
        self.what = what
        self._compiled = []
        for p in self.patterns:
            if not isinstance(p, str):
                raise TypeError(f"{what}: patterns must be strings, got {p!r}")
            try:
                self._compiled.append(re.compile(p))
            except re.error as e:
                raise ValueError(f"{what}: invalid regular expression {p!r} ({e})") from None

    def search(self, variable) -> bool:
        return any(c.search(variable.path) for c in self._compiled)

    def warn_unmatched(self, variables: Sequence) -> None:
        for p, c in zip(self.patterns, self._compiled):
            if not any(c.search(v.path) for v in variables):
                warnings.warn(f"{self.what}: pattern {p!r} matches no trainable variable path", stacklevel=3)


def _check_schedule(schedule: Mapping, what: str) -> dict[int, float]:
    """Validate ``{step: value}`` now rather than at the first training step; returns int keys."""
    if not isinstance(schedule, Mapping):
        raise TypeError(f"{what} must be a dict {{step: value}}, got {type(schedule).__name__}")
    if not schedule:
        raise ValueError(f"{what} is empty; use {{0: 1}} for a constant multiplier")
    checked: dict[int, float] = {}
    for key, value in schedule.items():
        try:
            step = float(key)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: step {key!r} is not a number") from None
        if step != int(step) or step < 0:
            raise ValueError(f"{what}: step {key!r} must be a non-negative integer")
        if int(step) in checked:
            raise ValueError(f"{what}: step {int(step)} appears more than once in {schedule}")
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{what}: value {value!r} at step {key!r} must be a finite number")
        checked[int(step)] = float(value)
    return dict(sorted(checked.items()))


def _check_optimizer_class(obj, function: str) -> None:
    if isinstance(obj, keras.optimizers.Optimizer):
        raise TypeError(
            f"{function} expects an optimizer class, got an instance of {type(obj).__name__}; "
            f"pass the class and instantiate what {function} returns"
        )
    if not (isinstance(obj, type) and issubclass(obj, keras.optimizers.Optimizer)):
        raise TypeError(f"{function} expects a keras.optimizers.Optimizer subclass, got {obj!r}")


def _learning_rate_alias(kwargs: dict, learning_rate, default, owner: str):
    """Take Keras 2's ``lr=`` out of ``kwargs`` as ``learning_rate`` (bert4keras scripts pass ``Adam(lr=1e-5)``)."""
    if "lr" not in kwargs:
        return learning_rate
    lr = kwargs.pop("lr")
    if learning_rate is not default and learning_rate != default:
        raise ValueError(f"{owner}: pass learning_rate or its Keras 2 alias lr, not both")
    return lr


def _recipe(cls: type) -> tuple:
    return cls.__dict__.get("_bert4keras_recipe", (f"{cls.__module__}.{cls.__qualname__}",))


def _finish(cls: type, base: type, name: str | None, feature: str) -> type:
    """Name the new class (``name`` or base name + feature) and register it for ``load_model``."""
    if name is not None and not (isinstance(name, str) and name.isidentifier()):
        raise ValueError(f"name must be a Python identifier, got {name!r}")
    name = name or f"{base.__name__}{feature}"
    cls.__name__ = cls.__qualname__ = name
    cls.__module__ = __name__
    cls._bert4keras_recipe = _recipe(base) + (feature,)
    previous = keras.saving.get_registered_object(f"bert4keras>{name}")
    if previous is not None and _recipe(previous) != cls._bert4keras_recipe:
        warnings.warn(
            f"optimizer name {name!r} was registered for {_recipe(previous)} and now names "
            f"{cls._bert4keras_recipe}; models saved with the old one will load the new one. "
            "Pass a distinct name= to extend_with_*.",
            stacklevel=3,
        )
    return _register(cls)


class _UpdateHooks:
    """Mixin: after the base update step, let extensions rewrite each trainable variable's new value.

    This is the Keras 3 form of bert4keras's ``K.update`` interception: ``_adjust_update``
    sees the value before the step (``old``) and the one the base optimizer proposes
    (``new``); ``_after_update`` then sees the final value (for EMA and lookahead).
    Inner extensions run first.
    """

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        old_values = [ops.copy(v.value) for v in trainable_variables]
        super()._backend_update_step(grads, trainable_variables, learning_rate)
        for grad, variable, old in zip(grads, trainable_variables, old_values):
            proposed = variable.value
            new = self._adjust_update(variable, old, proposed, grad, learning_rate)
            if new is not proposed:
                variable.assign(new)
            self._after_update(variable, old)

    def _adjust_update(self, variable, old, new, gradient, learning_rate):
        return new

    def _after_update(self, variable, old) -> None:
        return None


def _bases(base: type, function: str, hooks: bool = True) -> tuple:
    _check_optimizer_class(base, function)
    bases = (base,) if issubclass(base, LearningRateAlias) else (Keras2OptimizerMixin, base)
    if hooks and not issubclass(base, _UpdateHooks):
        return (_UpdateHooks,) + bases
    return bases


# --------------------------------------------------------------------------- optimizers


@_register
class Adam(LearningRateAlias, keras.optimizers.Optimizer):
    """bert4keras's Adam: ``θ -= lr·m̂/(√v̂ + ε)`` with ε=1e-6 and optional bias correction.

    Keras's Adam adds ε to the uncorrected √v (``α = lr·√(1-β2^t)/(1-β1^t)``) and defaults
    to ε=1e-7; this one reproduces bert4keras's numbers.
    """

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-6,
        bias_correction: bool = True,
        **kwargs,
    ):
        learning_rate = _learning_rate_alias(kwargs, learning_rate, 0.001, type(self).__name__)
        for name, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Adam: {name} must be in [0, 1), got {beta!r}")
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon if epsilon is not None else keras.config.epsilon()
        self.bias_correction = bias_correction

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._m, self._v = self.add_optimizer_variables(variables, ["m", "v"])

    def update_step(self, gradient, variable, learning_rate):
        i = self._get_variable_index(variable)
        m, v = self._m[i], self._v[i]
        lr = _dtype_cast(learning_rate, variable)
        g = _dtype_cast(gradient, variable)
        b1, b2 = self.beta_1, self.beta_2  # Python floats: 1 - b2 stays exact, unlike 1 - float32(b2)
        m_t = b1 * m + (1.0 - b1) * g
        v_t = b2 * v + (1.0 - b2) * ops.square(g)
        self.assign(m, m_t)
        self.assign(v, v_t)
        if self.bias_correction:
            t = _dtype_cast(self.iterations + 1, variable)
            m_t = m_t / _one_minus_power(self.beta_1, t)
            v_t = v_t / _one_minus_power(self.beta_2, t)
        self.assign_sub(variable, lr * m_t / (ops.sqrt(v_t) + self.epsilon))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """On PyTorch, one fused in-place pass (:func:`bert4keras.kernels.torch_fused_adam`,
        the same formula) when nothing overrides :meth:`update_step`; else per variable."""
        if not self._fused_torch_step(grads, trainable_variables):
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        params = [variable.value for variable in trainable_variables]
        index = [self._get_variable_index(variable) for variable in trainable_variables]
        kernels.torch_fused_adam(
            params, [g.contiguous() for g in grads], [self._m[i].value for i in index],
            [self._v[i].value for i in index], ops.convert_to_numpy(learning_rate),
            self.beta_1, self.beta_2, self.epsilon, int(ops.convert_to_numpy(self.iterations)) + 1)

    def _fused_torch_step(self, grads, trainable_variables) -> bool:
        if keras.backend.backend() != "torch" or not self.bias_correction \
                or type(self).update_step is not Adam.update_step:
            return False
        return all(keras.backend.standardize_dtype(v.dtype) == "float32"
                   and g is not None and g.dtype == v.value.dtype and tuple(g.shape) == tuple(v.shape)
                   for g, v in zip(grads, trainable_variables))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
            bias_correction=self.bias_correction,
        )
        return config


@_register
class AdaX(LearningRateAlias, keras.optimizers.Optimizer):
    """AdaX (arXiv:2004.09740): ``v ← (1+β2)v + β2 g²``, ``θ -= lr·m/(√(v/((1+β2)^t-1)) + ε)``.

    Its second-moment average tends to the mean of *all* past g², so late training
    approaches constant-lr SGD. ``(1+β2)^t - 1`` is computed as
    ``expm1(t·log1p(β2))``: the direct form loses 4 digits in float32 when β2=1e-4.
    """

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.0001,
        epsilon: float = 1e-6,
        **kwargs,
    ):
        learning_rate = _learning_rate_alias(kwargs, learning_rate, 0.001, type(self).__name__)
        if not beta_2 > 0:
            raise ValueError(f"AdaX: beta_2 must be > 0 (it divides by (1+beta_2)^t - 1), got {beta_2}")
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._m, self._v = self.add_optimizer_variables(variables, ["m", "v"])

    def update_step(self, gradient, variable, learning_rate):
        i = self._get_variable_index(variable)
        m, v = self._m[i], self._v[i]
        lr = _dtype_cast(learning_rate, variable)
        g = _dtype_cast(gradient, variable)
        b1, b2 = self.beta_1, self.beta_2
        t = _dtype_cast(self.iterations + 1, variable)
        m_t = b1 * m + (1.0 - b1) * g
        v_t = (1.0 + b2) * v + b2 * ops.square(g)
        self.assign(m, m_t)
        self.assign(v, v_t)
        v_hat = v_t / ops.expm1(t * math.log1p(self.beta_2))
        self.assign_sub(variable, lr * m_t / (ops.sqrt(v_hat) + self.epsilon))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
        return config


@_register
class Lion(LearningRateAlias, keras.optimizers.Lion):
    """Lion (arXiv:2302.06675) with bert4keras's defaults (lr=3e-4, β1=0.95, β2=0.98).

    The update ``θ -= lr·sign(β1 m + (1-β1) g); m ← β2 m + (1-β2) g`` is Keras's own.
    """

    def __init__(self, learning_rate: float = 3e-4, beta_1: float = 0.95, beta_2: float = 0.98, **kwargs):
        learning_rate = _learning_rate_alias(kwargs, learning_rate, 3e-4, type(self).__name__)
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, **kwargs)


class _RelativeStepSize(keras.optimizers.schedules.LearningRateSchedule):
    """AdaFactor's ``learning_rate=None``: ``min(1/√t, 0.01)·scale`` with ``t = step + 1``."""

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def __call__(self, step):
        t = ops.cast(step, keras.config.floatx()) + 1.0
        return ops.minimum(1.0 / ops.sqrt(t), 0.01) * self.scale

    def get_config(self) -> dict:
        return {"scale": self.scale}


@_register
class AdaFactorBase(LearningRateAlias, keras.optimizers.Optimizer):
    """AdaFactor's hyper-parameters, schedules and factoring rule, without the update step.

    Subclass it (and write ``build``/``update_step``) for an AdaFactor variant; :class:`AdaFactor`
    is the bert4keras one.
    """

    def __init__(
        self,
        learning_rate: float | None = 1e-3,
        beta1: float = 0.0,
        beta2: float | None = None,
        epsilon1: float = 1e-30,
        epsilon2: float = 1e-3,
        multiply_by_parameter_scale: bool = True,
        clipping_threshold: float | None = 1.0,
        min_dim_size_to_factor: int = 128,
        exclude_from_parameter_scale: Sequence[str] | None = None,
        **kwargs,
    ):
        learning_rate = _learning_rate_alias(kwargs, learning_rate, 1e-3, type(self).__name__)
        relative = learning_rate is None
        if relative:
            learning_rate = _RelativeStepSize(1.0 if multiply_by_parameter_scale else 0.05)
        super().__init__(learning_rate=learning_rate, **kwargs)
        self._relative_step = relative
        self.beta1 = beta1
        self._beta2 = beta2
        self.epsilon1 = epsilon1
        self.epsilon2 = epsilon2
        self.multiply_by_parameter_scale = multiply_by_parameter_scale
        self.clipping_threshold = clipping_threshold
        self.min_dim_size_to_factor = min_dim_size_to_factor
        self._parameter_scale_exclusions = _Patterns(
            exclude_from_parameter_scale, "AdaFactor exclude_from_parameter_scale"
        )

    @property
    def beta2(self):
        """The second-moment decay at the current step: ``1 - t^-0.8`` unless a constant was given."""
        return 1.0 - self._one_minus_beta2()

    def _one_minus_beta2(self):
        # Kept as 1 - beta2 rather than recomputed from beta2: float32 1 - 0.999 loses 4 digits.
        if self._beta2 is None:
            t = ops.cast(self.iterations + 1, keras.config.floatx())
            return ops.power(t, -0.8)
        return 1.0 - self._beta2

    def factored_shape(self, shape: Sequence[int]):
        """``(vr_shape, axis1, vc_shape, axis2)`` if ``shape`` is factored, else None.

        axis1 is the largest axis (reduced in vr), axis2 the second largest (reduced in vc).
        """
        if len(shape) < 2:
            return None
        order = np.argsort(np.asarray(shape), kind="stable")
        axis1, axis2 = int(order[-1]), int(order[-2])
        if shape[axis2] < self.min_dim_size_to_factor:
            return None
        vr_shape, vc_shape = list(shape), list(shape)
        vr_shape[axis1] = 1
        vc_shape[axis2] = 1
        return tuple(vr_shape), axis1, tuple(vc_shape), axis2

    def get_config(self) -> dict:
        config = super().get_config()
        if self._relative_step:
            config["learning_rate"] = None
        config.update(
            beta1=self.beta1, beta2=self._beta2, epsilon1=self.epsilon1, epsilon2=self.epsilon2,
            multiply_by_parameter_scale=self.multiply_by_parameter_scale,
            clipping_threshold=self.clipping_threshold,
            min_dim_size_to_factor=self.min_dim_size_to_factor,
            exclude_from_parameter_scale=self._parameter_scale_exclusions.patterns,
        )
        return config


@_register
class AdaFactor(AdaFactorBase):
    """AdaFactor (arXiv:1804.04235) as in bert4keras: https://kexue.fm/archives/7302.

    Second moments are factored into row/column means for variables whose second-largest
    dimension is at least ``min_dim_size_to_factor``, which is what makes it cheap in memory.
    """

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._m, self._v, self._vr, self._vc = [], [], [], []
        for var in variables:
            prefix = var.path.replace("/", "_")
            factored = self.factored_shape(tuple(var.shape))
            m = v = vr = vc = None
            if not self._overwrite_variable_with_gradient(var):
                if self.beta1 > 0.0:
                    m = self.add_variable_from_reference(var, "m")
                if factored is None:
                    v = self.add_variable_from_reference(var, "v")
                else:
                    vr = self.add_variable(factored[0], dtype=var.dtype, name=f"{prefix}_vr")
                    vc = self.add_variable(factored[2], dtype=var.dtype, name=f"{prefix}_vc")
            self._m.append(m)
            self._v.append(v)
            self._vr.append(vr)
            self._vc.append(vc)

    def update_step(self, gradient, variable, learning_rate):
        i = self._get_variable_index(variable)
        lr = _dtype_cast(learning_rate, variable)
        g = _dtype_cast(gradient, variable)
        rate = _dtype_cast(self._one_minus_beta2(), variable)
        beta2 = 1.0 - rate
        g2 = ops.square(g) + self.epsilon1
        factored = self.factored_shape(tuple(variable.shape))
        if factored is None:
            v_t = beta2 * self._v[i] + rate * g2
            self.assign(self._v[i], v_t)
        else:
            _, axis1, _, axis2 = factored
            vr, vc = self._vr[i], self._vc[i]
            vr_t = beta2 * vr + rate * ops.mean(g2, axis=axis1, keepdims=True)
            vc_t = beta2 * vc + rate * ops.mean(g2, axis=axis2, keepdims=True)
            self.assign(vr, vr_t)
            self.assign(vc, vc_t)
            v_t = vr_t * vc_t / ops.mean(vr_t, axis=axis2, keepdims=True)
        u = g / ops.sqrt(v_t + self.epsilon1)
        if self.clipping_threshold is not None:
            u = u / ops.maximum(1.0, root_mean_square(u) / self.clipping_threshold)
        if self.beta1 > 0.0:
            m = self._m[i]
            u = self.beta1 * m + (1.0 - self.beta1) * u
            self.assign(m, u)
        if self.multiply_by_parameter_scale and not self._parameter_scale_exclusions.search(variable):
            u = u * ops.maximum(root_mean_square(variable.value), self.epsilon2)
        self.assign_sub(variable, lr * u)


# --------------------------------------------------------------------------- extensions


def extend_with_weight_decay(BaseOptimizer: type, name: str | None = None) -> type:
    """Add decoupled weight decay ``θ' ← θ' - lr·weight_decay_rate·θ`` (AdamW-style).

    ``exclude_from_weight_decay`` holds regexes searched in ``variable.path``
    (e.g. ``['Norm', 'bias']``). Keras's own ``weight_decay`` only sees the short name.
    """

    class WeightDecay(*_bases(BaseOptimizer, "extend_with_weight_decay")):
        """Optimizer with decoupled weight decay."""

        def __init__(self, *args, weight_decay_rate: float = 0.01, exclude_from_weight_decay=(), **kwargs):
            super().__init__(*args, **kwargs)
            self.weight_decay_rate = weight_decay_rate
            self._weight_decay_exclusions = _Patterns(exclude_from_weight_decay, "exclude_from_weight_decay")

        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            self._weight_decay_exclusions.warn_unmatched(variables)

        def _adjust_update(self, variable, old, new, gradient, learning_rate):
            new = super()._adjust_update(variable, old, new, gradient, learning_rate)
            if self._weight_decay_exclusions.search(variable):
                return new
            return new - _dtype_cast(learning_rate, variable) * self.weight_decay_rate * old

        def get_config(self) -> dict:
            config = super().get_config()
            config.update(
                weight_decay_rate=self.weight_decay_rate,
                exclude_from_weight_decay=self._weight_decay_exclusions.patterns,
            )
            return config

    return _finish(WeightDecay, BaseOptimizer, name, "WeightDecay")


def extend_with_layer_adaptation(BaseOptimizer: type, name: str | None = None) -> type:
    """Add LAMB's trust ratio: rescale each variable's step so that ``‖Δθ‖ = lr·‖θ‖``.

    Variables whose path matches a regex in ``exclude_from_layer_adaptation`` keep the base step.
    """

    class LayerAdaptation(*_bases(BaseOptimizer, "extend_with_layer_adaptation")):
        """Optimizer with layer-wise adaptive step size (LAMB)."""

        def __init__(self, *args, exclude_from_layer_adaptation=(), **kwargs):
            super().__init__(*args, **kwargs)
            self._layer_adaptation_exclusions = _Patterns(
                exclude_from_layer_adaptation, "exclude_from_layer_adaptation"
            )

        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            self._layer_adaptation_exclusions.warn_unmatched(variables)

        def _adjust_update(self, variable, old, new, gradient, learning_rate):
            new = super()._adjust_update(variable, old, new, gradient, learning_rate)
            if self._layer_adaptation_exclusions.search(variable):
                return new
            dx = new - old
            lr = ops.maximum(_dtype_cast(learning_rate, variable), keras.config.epsilon())
            x_norm = ops.sqrt(ops.sum(ops.square(old)))
            step_norm = ops.sqrt(ops.sum(ops.square(dx / lr)))
            both = ops.logical_and(x_norm > 0.0, step_norm > 0.0)
            ratio = ops.where(both, x_norm / ops.where(both, step_norm, 1.0), 1.0)
            return old + dx * ratio

        def get_config(self) -> dict:
            config = super().get_config()
            config["exclude_from_layer_adaptation"] = self._layer_adaptation_exclusions.patterns
            return config

    return _finish(LayerAdaptation, BaseOptimizer, name, "LayerAdaptation")


def extend_with_piecewise_linear_lr(BaseOptimizer: type, name: str | None = None) -> type:
    """Multiply the learning rate by ``piecewise_linear(iterations, lr_schedule)``.

    ``{1000: 1, 2000: 0.1}``: warm up 0 -> 1 over 1000 applied updates, decay to 0.1 by
    step 2000, then stay. The rate itself is scaled, so weight decay and LAMB see it too.
    """

    class PiecewiseLinearLR(*_bases(BaseOptimizer, "extend_with_piecewise_linear_lr", hooks=False)):
        """Optimizer with a piecewise-linear learning-rate multiplier."""

        def __init__(self, *args, lr_schedule: Mapping | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.lr_schedule = _check_schedule({0: 1} if lr_schedule is None else lr_schedule, "lr_schedule")

        def _get_current_learning_rate(self):
            multiplier = piecewise_linear(self.iterations, self.lr_schedule)
            return super()._get_current_learning_rate() * multiplier

        def get_config(self) -> dict:
            config = super().get_config()
            config["lr_schedule"] = dict(self.lr_schedule)
            return config

    return _finish(PiecewiseLinearLR, BaseOptimizer, name, "PiecewiseLinearLR")


def _check_accum_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"grad_accum_steps must be an integer >= 1, got {steps!r}")
    return int(steps)


def extend_with_gradient_accumulation(BaseOptimizer: type, name: str | None = None) -> type:
    """Update once every ``grad_accum_steps`` calls with the mean of their gradients.

    Built on Keras's ``gradient_accumulation_steps`` (same step semantics; non-update
    steps leave weights and slots bit-identical); adds ``grad_accum_steps=1`` as a
    pass-through and makes learning-rate schedules count applied updates.
    """

    class GradientAccumulation(*_bases(BaseOptimizer, "extend_with_gradient_accumulation", hooks=False)):
        """Optimizer with gradient accumulation."""

        def __init__(self, *args, grad_accum_steps: int = 2, **kwargs):
            steps = _check_accum_steps(grad_accum_steps)
            if kwargs.pop("gradient_accumulation_steps", None) is not None:
                raise ValueError(
                    "pass grad_accum_steps only: Keras's gradient_accumulation_steps is set from it"
                )
            if kwargs.get("use_ema"):
                raise ValueError(
                    "Keras's use_ema averages on every micro-step, not only on applied updates; "
                    "use extend_with_exponential_moving_average with gradient accumulation"
                )
            super().__init__(*args, gradient_accumulation_steps=steps if steps > 1 else None, **kwargs)
            self.grad_accum_steps = steps

        def _get_current_learning_rate(self):
            if isinstance(self._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
                return self._learning_rate(self.iterations)
            return super()._get_current_learning_rate()

        def get_config(self) -> dict:
            config = super().get_config()
            config.pop("gradient_accumulation_steps", None)
            config["grad_accum_steps"] = self.grad_accum_steps
            return config

    return _finish(GradientAccumulation, BaseOptimizer, name, "GradientAccumulation")


def AccumOptimizer(
    optimizer: keras.optimizers.Optimizer, steps_per_update: int
) -> keras.optimizers.Optimizer:
    """The 2019 ``AccumOptimizer(Adam(1e-3), 10)`` form: a new, accumulating copy of an unbuilt optimizer."""
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(f"AccumOptimizer expects an optimizer instance, got {optimizer!r}")
    if optimizer.built:
        raise ValueError(
            f"AccumOptimizer: optimizer {optimizer.name!r} is already built; its state cannot be carried over"
        )
    config = optimizer.get_config()
    if config.pop("gradient_accumulation_steps", None):
        raise ValueError(f"AccumOptimizer: optimizer {optimizer.name!r} already accumulates gradients")
    cls = extend_with_gradient_accumulation(type(optimizer))
    return cls.from_config({**config, "grad_accum_steps": steps_per_update})


def extend_with_lookahead(BaseOptimizer: type, name: str | None = None) -> type:
    """Add Lookahead (arXiv:1907.08610): every ``steps_per_slow_update`` updates, move slow
    weights ``slow_step_size`` of the way to the fast ones and restart from there.

    Slow weights start at the weights before the first update (bert4keras started them at 0,
    which halved the weights at the first sync).
    """

    class Lookahead(*_bases(BaseOptimizer, "extend_with_lookahead")):
        """Optimizer with Lookahead."""

        def __init__(self, *args, steps_per_slow_update: int = 5, slow_step_size: float = 0.5, **kwargs):
            if isinstance(steps_per_slow_update, bool) or not isinstance(steps_per_slow_update, int) \
                    or steps_per_slow_update < 1:
                raise ValueError(
                    f"steps_per_slow_update must be an integer >= 1, got {steps_per_slow_update!r}"
                )
            super().__init__(*args, **kwargs)
            self.steps_per_slow_update = steps_per_slow_update
            self.slow_step_size = slow_step_size

        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            self._slow_weights = self.add_optimizer_variables(variables, "slow")

        def _after_update(self, variable, old) -> None:
            super()._after_update(variable, old)
            slow = self._slow_weights[self._get_variable_index(variable)]
            if slow is None:
                return
            slow_t = ops.where(ops.equal(self.iterations, 0), old, slow.value)
            fast = variable.value
            synced = slow_t + _dtype_cast(self.slow_step_size, variable) * (fast - slow_t)
            sync = ops.equal((self.iterations + 1) % self.steps_per_slow_update, 0)
            slow.assign(ops.where(sync, synced, slow_t))
            variable.assign(ops.where(sync, synced, fast))

        def get_config(self) -> dict:
            config = super().get_config()
            config.update(
                steps_per_slow_update=self.steps_per_slow_update, slow_step_size=self.slow_step_size
            )
            return config

    return _finish(Lookahead, BaseOptimizer, name, "Lookahead")


def extend_with_lazy_optimization(BaseOptimizer: type, name: str | None = None) -> type:
    """Update only the rows (last axis) with a non-zero gradient of variables matching
    ``include_in_lazy_optimization`` (regexes on ``variable.path``; typically embeddings).

    Slots (m, v, ...) still evolve on every step, as in bert4keras.
    """

    class LazyOptimization(*_bases(BaseOptimizer, "extend_with_lazy_optimization")):
        """Optimizer with lazy (touched-rows-only) updates."""

        def __init__(self, *args, include_in_lazy_optimization=(), **kwargs):
            super().__init__(*args, **kwargs)
            self._lazy_inclusions = _Patterns(include_in_lazy_optimization, "include_in_lazy_optimization")

        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            self._lazy_inclusions.warn_unmatched(variables)

        def _adjust_update(self, variable, old, new, gradient, learning_rate):
            new = super()._adjust_update(variable, old, new, gradient, learning_rate)
            if not self._lazy_inclusions.search(variable):
                return new
            touched = ops.not_equal(gradient, 0.0)
            if len(variable.shape) > 0:
                touched = ops.any(touched, axis=-1, keepdims=True)
            return old + (new - old) * ops.cast(touched, variable.dtype)

        def get_config(self) -> dict:
            config = super().get_config()
            config["include_in_lazy_optimization"] = self._lazy_inclusions.patterns
            return config

    return _finish(LazyOptimization, BaseOptimizer, name, "LazyOptimization")


def extend_with_exponential_moving_average(BaseOptimizer: type, name: str | None = None) -> type:
    """Keep ``ema ← μ·ema + (1-μ)·θ`` (zero-initialised) after every applied update.

    ``apply_ema_weights()`` swaps the (bias-corrected) averages into the model for
    evaluation or saving; ``reset_old_weights()`` swaps the training weights back.
    """

    class ExponentialMovingAverage(*_bases(BaseOptimizer, "extend_with_exponential_moving_average")):
        """Optimizer that keeps an exponential moving average of the weights."""

        def __init__(self, *args, ema_momentum: float = 0.999, **kwargs):
            if not 0.0 <= ema_momentum < 1.0:
                raise ValueError(f"ema_momentum must be in [0, 1), got {ema_momentum!r}")
            super().__init__(*args, **kwargs)
            self.ema_momentum = ema_momentum
            self._old_weights = None

        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            self._ema_weights = self.add_optimizer_variables(variables, "ema")

        def _after_update(self, variable, old) -> None:
            super()._after_update(variable, old)
            ema = self._ema_weights[self._get_variable_index(variable)]
            if ema is not None:
                mu = self.ema_momentum  # a Python float, so 1 - mu is exact before the cast
                ema.assign(ema.value * mu + variable.value * (1.0 - mu))

        def apply_ema_weights(self, bias_correction: bool = True) -> None:
            """Back up the model weights and load the averages, divided by ``1 - μ^t`` if asked."""
            if self._old_weights is not None:
                raise RuntimeError(
                    "apply_ema_weights: EMA weights are already applied; call reset_old_weights() first"
                )
            t = int(ops.convert_to_numpy(self.iterations)) if self.built else 0
            if t == 0:
                raise ValueError("apply_ema_weights: no update has been applied yet, so there is no average")
            scale = 1.0 - self.ema_momentum ** t if bias_correction else 1.0
            pairs = self._averaged_pairs()
            self._old_weights = [ops.convert_to_numpy(v) for v, _ in pairs]
            for variable, ema in pairs:
                variable.assign(ops.convert_to_numpy(ema).astype("float64") / scale)

        def reset_old_weights(self) -> None:
            """Restore the weights backed up by :meth:`apply_ema_weights`."""
            if self._old_weights is None:
                raise RuntimeError("reset_old_weights: apply_ema_weights() has not been called")
            for (variable, _), value in zip(self._averaged_pairs(), self._old_weights):
                variable.assign(value)
            self._old_weights = None

        def _averaged_pairs(self) -> list:
            return [(v, e) for v, e in zip(self._trainable_variables, self._ema_weights) if e is not None]

        def get_config(self) -> dict:
            config = super().get_config()
            config["ema_momentum"] = self.ema_momentum
            return config

    return _finish(ExponentialMovingAverage, BaseOptimizer, name, "EMA")


def extend_with_parameter_wise_lr(BaseOptimizer: type, name: str | None = None) -> type:
    """Scale each variable's step by ``∏ v for k, v in paramwise_lr_schedule if k in variable.path``.

    ``{'Transformer-11': 2, 'Embedding': 0.1}``: keys are plain substrings of the path
    (``layer_name/.../weight``); all matching keys multiply. Slots are not scaled.
    """

    class ParameterWiseLR(*_bases(BaseOptimizer, "extend_with_parameter_wise_lr")):
        """Optimizer with per-variable learning-rate multipliers."""

        def __init__(self, *args, paramwise_lr_schedule: Mapping | None = None, **kwargs):
            schedule = dict(paramwise_lr_schedule or {})
            for key, value in schedule.items():
                if not isinstance(key, str):
                    raise TypeError(
                        f"paramwise_lr_schedule: key {key!r} must be a string (a part of a variable path)"
                    )
                if not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(
                        f"paramwise_lr_schedule: multiplier {value!r} for {key!r} must be a finite number"
                    )
            super().__init__(*args, **kwargs)
            self.paramwise_lr_schedule = schedule

        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            for key in self.paramwise_lr_schedule:
                if not any(key in v.path for v in variables):
                    warnings.warn(
                        f"paramwise_lr_schedule: {key!r} is in no trainable variable path", stacklevel=2
                    )

        def _multiplier(self, variable) -> float:
            return math.prod(v for k, v in self.paramwise_lr_schedule.items() if k in variable.path)

        def _adjust_update(self, variable, old, new, gradient, learning_rate):
            new = super()._adjust_update(variable, old, new, gradient, learning_rate)
            multiplier = self._multiplier(variable)
            if multiplier == 1:
                return new
            return old + (new - old) * multiplier

        def get_config(self) -> dict:
            config = super().get_config()
            config["paramwise_lr_schedule"] = dict(self.paramwise_lr_schedule)
            return config

    return _finish(ParameterWiseLR, BaseOptimizer, name, "ParameterWiseLR")


def extend_with_gradient_transform(BaseOptimizer: type, name: str | None = None) -> type:
    """Add ``gradient_transform(grads, variables) -> grads``, applied to each call's gradients
    before clipping, weight decay and gradient accumulation (Keras 3 has no ``get_gradients``).

    To save the optimizer, register the function with ``keras.saving.register_keras_serializable``.
    """

    class GradientTransform(*_bases(BaseOptimizer, "extend_with_gradient_transform", hooks=False)):
        """Optimizer with a user gradient transform."""

        def __init__(self, *args, gradient_transform: Callable | dict | None = None, **kwargs):
            if isinstance(gradient_transform, dict):
                gradient_transform = keras.saving.deserialize_keras_object(gradient_transform)
            if gradient_transform is not None and not callable(gradient_transform):
                raise TypeError(f"gradient_transform must be callable, got {gradient_transform!r}")
            super().__init__(*args, **kwargs)
            self.gradient_transform = gradient_transform

        def _backend_apply_gradients(self, grads, trainable_variables):
            if self.gradient_transform is not None:
                new_grads = list(self.gradient_transform(list(grads), list(trainable_variables)))
                if len(new_grads) != len(grads):
                    raise ValueError(
                        f"gradient_transform returned {len(new_grads)} gradients for {len(grads)} variables"
                    )
                grads = new_grads
            super()._backend_apply_gradients(grads, trainable_variables)

        def get_config(self) -> dict:
            config = super().get_config()
            fn = self.gradient_transform
            config["gradient_transform"] = None if fn is None else keras.saving.serialize_keras_object(fn)
            return config

    return _finish(GradientTransform, BaseOptimizer, name, "GradientTransform")


def export_to_custom_objects(base_extend_with: Callable) -> Callable:
    """Decorator for a user ``extend_with_xxx(BaseOptimizer)``: add ``name=`` and register the result.

    The returned class is renamed to ``name`` if given and put in
    ``keras.saving.get_custom_objects()`` under its name, so saved models find it.
    """

    @functools.wraps(base_extend_with)
    def new_extend_with(BaseOptimizer: type, name: str | None = None) -> type:
        new_class = base_extend_with(BaseOptimizer)
        if name is not None:
            if not (isinstance(name, str) and name.isidentifier()):
                raise ValueError(f"name must be a Python identifier, got {name!r}")
            new_class.__name__ = new_class.__qualname__ = name
        keras.saving.get_custom_objects()[new_class.__name__] = new_class
        return new_class

    return new_extend_with


# Keras 3 has one optimizer API, so bert4keras's tf.keras (_v2 / V2) variants are the same.
extend_with_weight_decay_v2 = extend_with_weight_decay
extend_with_layer_adaptation_v2 = extend_with_layer_adaptation
extend_with_piecewise_linear_lr_v2 = extend_with_piecewise_linear_lr
extend_with_gradient_accumulation_v2 = extend_with_gradient_accumulation
extend_with_lookahead_v2 = extend_with_lookahead
extend_with_lazy_optimization_v2 = extend_with_lazy_optimization
extend_with_exponential_moving_average_v2 = extend_with_exponential_moving_average
extend_with_parameter_wise_lr_v2 = extend_with_parameter_wise_lr
AdaFactorV1 = AdaFactorV2 = AdaFactor  # 0.11.5's Keras-2 and tf.keras implementations
LionV2 = Lion

custom_objects = {"Adam": Adam, "AdaFactor": AdaFactor, "AdaX": AdaX, "Lion": Lion}
