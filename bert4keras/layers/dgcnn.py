"""Dilated gated convolution, the building block of DGCNN (https://kexue.fm/archives/5409)."""

from __future__ import annotations

from keras import initializers, ops

from bert4keras.layers.core import Dropout, Layer, register


@register
class DilatedGatedConv1D(Layer):
    """Gated 1-D convolution ``Y = X·(1−σ) + H·σ`` with ``[H, G] = Conv1D(X)`` and ``σ = sigmoid(G)``.

    One dilated "same"-padded convolution gives the value H and the gate logits G (``kernel[..., :filters]``
    and ``kernel[..., filters:]``). With ``residual`` (the default when ``filters`` equals the input
    width) the input passes where the gate is closed; otherwise the output is the plain GLU ``H·σ``.
    Padded positions are zeroed before the convolution and in the output, so padding never changes
    the outputs at real positions. ``gate_dropout`` drops gate logits while training, as DGCNN did.
    """

    def __init__(self, filters: int | None = None, kernel_size: int = 3, dilation_rate: int = 1,
                 residual: bool | None = None, gate_dropout: float = 0.0,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        for name, value in (("kernel_size", kernel_size), ("dilation_rate", dilation_rate)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if filters is not None and (not isinstance(filters, int) or filters < 1):
            raise ValueError(f"filters must be a positive integer or None, got {filters!r}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.dilation_rate = dilation_rate
        self.residual = residual
        self.gate_dropout = gate_dropout
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.dropout = Dropout(gate_dropout, name="gate_dropout")

    def build(self, input_shape):
        width = input_shape[-1]
        self.units = width if self.filters is None else self.filters
        self.use_residual = self.units == width if self.residual is None else self.residual
        if self.use_residual and self.units != width:
            raise ValueError(
                f"{self.name}: residual=True needs filters == input width, got filters={self.units} "
                f"and input width {width}"
            )
        self.kernel = self.add_weight(name="kernel", shape=(self.kernel_size, width, 2 * self.units),
                                      initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(2 * self.units,), initializer=self.bias_initializer)

    def call(self, inputs, mask=None, training=False):
        if mask is not None:
            mask = ops.cast(mask, inputs.dtype)[..., None]
            inputs = inputs * mask
        span = self.dilation_rate * (self.kernel_size - 1)
        padded = ops.pad(inputs, [(0, 0), (span // 2, span - span // 2), (0, 0)])
        kernel = ops.cast(self.kernel, inputs.dtype)
        conv = ops.conv(padded, kernel, padding="valid", dilation_rate=self.dilation_rate)
        conv = conv + ops.cast(self.bias, inputs.dtype)
        value, gate = conv[..., : self.units], conv[..., self.units :]
        gate = ops.sigmoid(self.dropout(gate, training=training))
        outputs = inputs * (1 - gate) + value * gate if self.use_residual else value * gate
        return outputs if mask is None else outputs * mask

    def compute_output_shape(self, input_shape):
        units = input_shape[-1] if self.filters is None else self.filters
        return tuple(input_shape[:-1]) + (units,)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "dilation_rate": self.dilation_rate,
            "residual": self.residual,
            "gate_dropout": self.gate_dropout,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
        }
