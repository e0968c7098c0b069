"""RoFormer (rotary position embeddings, kexue.fm/archives/8265) and RoFormerV2."""

from __future__ import annotations

from bert4keras.layers import (
    Activation, Dense, DepthScaledTruncatedNormal, SinusoidalPositionEmbedding,
)
from bert4keras.models.bert import BERT


class RoFormer(BERT):
    """BERT with rotary position embeddings instead of a position table: q and k are
    rotated by angles proportional to their positions, so q·k depends on the relative
    distance only.

    ``custom_position_ids`` feeds the rotation angles from an ``Input-Position`` input.
    """

    absolute_positions = False
    position_bias_type = "rotary"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.reject_options(hierarchical_position=self.hierarchical_position)

    def compute_position_bias(self, inputs=None):
        """The sinusoidal angles of ``inputs``' positions, shared by every layer."""
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
        hf_name, transpose = BERT.hf_variable_name(self, name)
        if hf_name.startswith("bert."):
            hf_name = "roformer." + hf_name[len("bert."):]
        return hf_name, transpose


class RoFormerV2(BERT):
    """RoFormer without biases or LayerNorm parameters: every norm is the parameter-free
    RMS norm ``x / rms(x)``, and the depth-scaled initializer replaces warm-up.

    Blocks are BERT's (post-norm) with ``use_bias`` off and the RMS norm; positions are
    RoFormer's rotary angles. Heads: ``with_mlm`` only (tied embeddings, no bias).
    ``Output-Mapping`` (only when ``embedding_size != hidden_size``) is saved as
    ``cls/predictions/output_mapping``.
    """

    use_bias = False
    absolute_positions = False
    position_bias_type = "rotary"
    compute_position_bias = RoFormer.compute_position_bias
    hf_base_prefixes = RoFormer.hf_base_prefixes
    hf_variable_name = RoFormer.hf_variable_name

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.reject_options(hierarchical_position=self.hierarchical_position,
                            with_pool=self.with_pool, with_nsp=self.with_nsp)

    def build(self, layer_norm_cond=None, **kwargs):
        self.reject_options(layer_norm_cond=layer_norm_cond is not None)
        super().build(**kwargs)

    @property
    def initializer(self):
        return DepthScaledTruncatedNormal(self.num_hidden_layers, order=2)

    def apply_norm(self, x, name: str):
        """The parameter-free RMS norm used everywhere in RoFormerV2."""
        return super().apply_norm(x, name, zero_mean=False, scale=False, offset=False)

    def apply_embeddings(self, inputs):
        """Token (+ segment) embeddings -> dropout -> RMS norm (-> mapping)."""
        inputs = list(inputs) if isinstance(inputs, list) else [inputs]
        x = self.apply_token_embedding(inputs[0])
        if self.segment_vocab_size > 0:
            x = self.apply_segment_embedding(x, inputs[1], self.segment_vocab_size,
                                             shared=self.shared_segment_embeddings)
        x = self.dropout(x, "Embedding-Dropout")
        x = self.apply_norm(x, "Embedding-Norm")
        return self.apply_embedding_mapping(x, use_bias=False)

    def apply_final_layers(self, inputs):
        """The sequence output, or MLM probabilities (``with_mlm``) through the tied embeddings."""
        if not self.with_mlm:
            return inputs
        x = inputs
        if self.embedding_size != self.hidden_size:
            x = self.apply(inputs=x, layer=Dense, units=self.embedding_size, use_bias=False,
                           kernel_initializer=self.initializer, name="Output-Mapping")
        x = self.dropout(x, "Output-MLM-Dropout")
        x = self.apply_tied_output(x)
        mlm_activation = "softmax" if self.with_mlm is True else self.with_mlm
        return self.apply(inputs=x, layer=Activation, activation=mlm_activation,
                          name="Output-MLM-Activation")

    def variable_mapping(self):
        """BERT's names without the biases and LayerNorm parameters this model lacks."""
        mapping = {
            k: [n for n in names if not n.endswith(("beta", "gamma", "bias"))]
            for k, names in super().variable_mapping().items()
        }
        mapping["Output-Mapping"] = ["cls/predictions/output_mapping/kernel"]
        return mapping
