"""GAU-α (kexue.fm/archives/9052): RoFormerV2 with Gated Attention Units as its blocks."""

from __future__ import annotations

from bert4keras.layers import Add, DepthScaledTruncatedNormal, Dropout, GatedAttentionUnit
from bert4keras.models.roformer import RoFormerV2


class GAU_alpha(RoFormerV2):
    """Each block is ``GAU -> add -> RMS norm``; the GAU uses rotary positions, the
    ``softmax_plus`` normalization and no biases. ``intermediate_size`` is the GAU's
    gated width and ``attention_key_size`` its single-head q/k size.
    """

    def check_options(self) -> None:
        super().check_options()
        self.reject_options(residual_attention_scores=self.residual_attention_scores,
                            talking_heads=self.talking_heads)

    @property
    def initializer(self):
        return DepthScaledTruncatedNormal(self.num_hidden_layers, order=3)

    def apply_main_layers(self, inputs, index: int):
        name = f"Transformer-{index}-GatedAttentionUnit"
        x, arguments = [inputs], {"a_bias": None, "p_bias": "rotary"}
        attention_mask = self.compute_attention_bias()
        if attention_mask is not None:
            arguments["a_bias"] = True
            x.append(attention_mask)
        x.append(self.compute_position_bias(inputs))
        x = self.apply(inputs=x, layer=GatedAttentionUnit, arguments=arguments,
                       units=self.intermediate_size, key_size=self.attention_key_size,
                       activation=self.hidden_act, use_bias=False, normalization="softmax_plus",
                       attention_dropout=self.attention_dropout_rate,
                       kernel_initializer=self.initializer, name=name)
        x = self.apply(inputs=x, layer=Dropout, rate=self.dropout_rate, name=f"{name}-Dropout")
        x = self.apply(inputs=[inputs, x], layer=Add, name=f"{name}-Add")
        return self.rms_norm(x, f"{name}-Norm")

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
