"""``Loss``: a layer that adds a loss computed from its inputs, so a model can be
compiled with no ``loss`` and trained with ``fit(x, None)`` (labels enter as inputs).
"""

from __future__ import annotations

import keras
from keras import ops

from bert4keras.layers.core import Layer, register
from bert4keras.layers.crf import full_precision_dtype


@register
class Loss(Layer):
    """Subclass and implement ``compute_loss(inputs, mask=None)`` returning a scalar.

    The layer returns its inputs: all of them (``output_axis=None``), the one at
    ``output_axis`` (an int) or those listed (a list). It computes in the variable
    dtype (float32 under a mixed precision policy), so the loss never runs in half
    precision.
    """

    def __init__(self, output_axis: int | list | None = None, **kwargs):
        if type(self).compute_loss is Loss.compute_loss:
            raise TypeError(f"{type(self).__name__} must implement compute_loss(inputs, mask=None): "
                            "Loss is a base class that adds whatever that method returns")
        full_precision_dtype(kwargs)
        super().__init__(**kwargs)
        self.output_axis = output_axis

    def compute_loss(self, inputs, mask=None):
        """The scalar loss for a batch; ``mask`` lists each input's Keras mask (or None)."""
        raise NotImplementedError

    def call(self, inputs, mask=None):
        if mask is None and isinstance(inputs, (list, tuple)):
            mask = [None] * len(inputs)
        loss = self.compute_loss(inputs, mask)
        self.add_loss(ops.cast(loss, self.variable_dtype))
        return self.select(inputs)

    def select(self, values):
        if self.output_axis is None:
            return values
        if isinstance(self.output_axis, (list, tuple)):
            return [values[i] for i in self.output_axis]
        return values[self.output_axis]

    def compute_output_shape(self, input_shape):
        return self.select(input_shape)

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        return self.select(mask)

    def get_config(self):
        return {**super().get_config(), "output_axis": self.output_axis}
