"""GAU-α (kexue.fm/archives/9052): RoFormerV2 with Gated Attention Units as its blocks."""

from __future__ import annotations

from bert4keras.layers import DepthScaledTruncatedNormal, GatedAttentionUnit
from bert4keras.models.roformer import RoFormerV2


class GAU_alpha(RoFormerV2):
    """Each block is ``GAU -> add -> RMS norm``; the GAU uses rotary positions, the
    ``softmax_plus`` normalization and no biases. ``intermediate_size`` is the GAU's
    gated width and ``attention_key_size`` its single-head q/k size.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.reject_options(residual_attention_scores=self.residual_attention_scores,
                            talking_heads=self.talking_heads)

    @property
    def initializer(self):
        return DepthScaledTruncatedNormal(self.num_hidden_layers, order=3)

    def apply_main_layers(self, inputs, index: int):
        """GAU (mask and rotary angles as extra inputs) -> dropout, add -> RMS norm."""
        name = f"Transformer-{index}-GatedAttentionUnit"
        x, arguments = self.attention_inputs(inputs)
        x = self.apply(inputs=x[2:], layer=GatedAttentionUnit, arguments=arguments,  # one x, not q, k, v
                       units=self.intermediate_size, key_size=self.attention_key_size,
                       activation=self.hidden_act, use_bias=False, normalization="softmax_plus",
                       attention_dropout=self.attention_dropout_rate,
                       kernel_initializer=self.initializer, name=name)
        return self.apply_norm(self.dropout_add(inputs, x, name), f"{name}-Norm")

    def variable_mapping(self):
        mapping = {k: v for k, v in super().variable_mapping().items()
                   if not k.startswith("Transformer-")}
        for i in range(self.num_hidden_layers):
            prefix = f"GAU_alpha/encoder/layer_{i}/gau/"
            mapping[f"Transformer-{i}-GatedAttentionUnit"] = [
                prefix + "i_dense/kernel", prefix + "o_dense/kernel",
                prefix + "q_scaleoffset/gamma", prefix + "k_scaleoffset/gamma",
            ]
        return mapping
