"""RoFormer (rotary position embeddings, kexue.fm/archives/8265) and RoFormerV2."""

from __future__ import annotations

from bert4keras.layers import (
    Activation, Add, Dense, DepthScaledTruncatedNormal, Dropout, Embedding, FeedForward,
    LayerNormalization, MultiHeadAttention, SinusoidalPositionEmbedding,
)
from bert4keras.models.bert import BERT
from bert4keras.models.nezha import NEZHA


class RoFormer(NEZHA):
    """NEZHA's layout with rotary position embeddings: q and k are rotated by angles
    proportional to their positions, so q·k depends on the relative distance only.

    ``custom_position_ids`` feeds the rotation angles from an ``Input-Position`` input.
    """

    position_bias_type = "rotary"

    def check_options(self) -> None:
        self.reject_options(hierarchical_position=self.hierarchical_position)

    def compute_position_bias(self, inputs=None):
        if self.position_bias is None:
            x = inputs
            if self.custom_position_ids:  # Input-Position is the graph's last raw input
                x = [inputs, self.graph_inputs[-1]]
            self.position_bias = self.apply(
                inputs=x, layer=SinusoidalPositionEmbedding, output_dim=self.attention_key_size,
                merge_mode="zero", custom_position_ids=self.custom_position_ids,
                name="Embedding-Rotary-Position")
        return self.position_bias

    hf_base_prefixes = ("roformer.",)

    def hf_variable_name(self, name: str) -> tuple[str, bool]:
        """Google name -> HF ``RoFormerModel``/``RoFormerForMaskedLM`` name."""
        if name == "bert/encoder/embedding_hidden_mapping_in/kernel":
            return "roformer.embeddings_project.weight", True
        if name == "bert/encoder/embedding_hidden_mapping_in/bias":
            return "roformer.embeddings_project.bias", False
        hf_name, transpose = super().hf_variable_name(name)
        if hf_name.startswith("bert."):
            hf_name = "roformer." + hf_name[len("bert."):]
        return hf_name, transpose


class RoFormerV2(RoFormer):
    """RoFormer without biases or LayerNorm parameters: every norm is the parameter-free
    RMS norm ``x / rms(x)``, and the depth-scaled initializer replaces warm-up.

    Heads: ``with_mlm`` only (tied embeddings, no bias). ``Output-Mapping`` (only
    when ``embedding_size != hidden_size``) is saved as ``cls/predictions/output_mapping``.
    """

    def check_options(self) -> None:
        self.reject_options(hierarchical_position=self.hierarchical_position,
                            with_pool=self.with_pool, with_nsp=self.with_nsp)

    def build(self, layer_norm_cond=None, **kwargs):
        self.reject_options(layer_norm_cond=layer_norm_cond is not None)
        super().build(**kwargs)

    @property
    def initializer(self):
        return DepthScaledTruncatedNormal(self.num_hidden_layers, order=2)

    def rms_norm(self, x, name: str):
        """The parameter-free RMS norm used everywhere in RoFormerV2."""
        return self.apply(inputs=x, layer=LayerNormalization, zero_mean=False, scale=False,
                          offset=False, epsilon=self.layer_norm_eps, name=name)

    def apply_embeddings(self, inputs):
        """Token (+ segment) embeddings -> dropout -> RMS norm (-> mapping)."""
        x = self.apply_token_segment_embeddings(list(inputs))
        x = self.apply(inputs=x, layer=Dropout, rate=self.dropout_rate, name="Embedding-Dropout")
        x = self.rms_norm(x, "Embedding-Norm")
        if self.embedding_size != self.hidden_size:
            x = self.apply(inputs=x, layer=Dense, units=self.hidden_size, use_bias=False,
                           kernel_initializer=self.initializer, name="Embedding-Mapping")
        return x

    def apply_main_layers(self, inputs, index: int):
        """Post-norm block without biases: attention -> add -> RMS -> FFN -> add -> RMS."""
        attention_name, feed_forward_name = self.block_names(index)
        x, arguments = self.attention_inputs(inputs, index)
        x = self.apply(inputs=x, layer=MultiHeadAttention, arguments=arguments,
                       heads=self.num_attention_heads, head_size=self.attention_head_size,
                       out_dim=self.hidden_size, key_size=self.attention_key_size, use_bias=False,
                       attention_dropout=self.attention_dropout_rate,
                       kernel_initializer=self.initializer, name=attention_name)
        x = self.apply(inputs=x, layer=Dropout, rate=self.dropout_rate,
                       name=f"{attention_name}-Dropout")
        x = self.apply(inputs=[inputs, x], layer=Add, name=f"{attention_name}-Add")
        x = self.rms_norm(x, f"{attention_name}-Norm")

        xi = x
        x = self.apply(inputs=x, layer=FeedForward, units=self.intermediate_size,
                       activation=self.hidden_act, use_bias=False,
                       kernel_initializer=self.initializer, name=feed_forward_name)
        x = self.apply(inputs=x, layer=Dropout, rate=self.dropout_rate,
                       name=f"{feed_forward_name}-Dropout")
        x = self.apply(inputs=[xi, x], layer=Add, name=f"{feed_forward_name}-Add")
        return self.rms_norm(x, f"{feed_forward_name}-Norm")

    def apply_final_layers(self, inputs):
        """The sequence output, or MLM probabilities (``with_mlm``) through the tied embeddings."""
        if not self.with_mlm:
            return inputs
        x = inputs
        if self.embedding_size != self.hidden_size:
            x = self.apply(inputs=x, layer=Dense, units=self.embedding_size, use_bias=False,
                           kernel_initializer=self.initializer, name="Output-Mapping")
        x = self.apply(inputs=x, layer=Dropout, rate=self.dropout_rate, name="Output-MLM-Dropout")
        x = self.apply(inputs=x, layer=Embedding, arguments={"mode": "dense"},
                       name="Embedding-Token")
        mlm_activation = "softmax" if self.with_mlm is True else self.with_mlm
        return self.apply(inputs=x, layer=Activation, activation=mlm_activation,
                          name="Output-MLM-Activation")

    def variable_mapping(self):
        """BERT's names without the biases and LayerNorm parameters this model lacks."""
        mapping = {
            k: [n for n in names if not n.endswith(("beta", "gamma", "bias"))]
            for k, names in BERT.variable_mapping(self).items()
        }
        mapping["Output-Mapping"] = ["cls/predictions/output_mapping/kernel"]
        return mapping
