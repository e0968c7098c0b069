"""NEZHA (arXiv:1909.00204): BERT with functional relative positions instead of a
position table."""

from __future__ import annotations

from bert4keras.backend import Sinusoidal
from bert4keras.layers import Dense, Dropout, RelativePositionEmbedding
from bert4keras.models.bert import BERT


class NEZHA(BERT):
    """BERT whose attention adds fixed sinusoidal embeddings of the clipped relative
    distance to keys and values (``p_bias='typical_relative'``, arXiv:1803.02155).

    Distances beyond ``max_relative_position`` (64, as NEZHA was trained) are clipped.
    Checkpoints use BERT's names; there is no position table to load.
    """

    position_bias_type = "typical_relative"

    def __init__(self, max_relative_position: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.max_relative_position = max_relative_position
        self.check_options()

    def check_options(self) -> None:
        """Reject the build options that have no meaning for this model."""
        self.reject_options(hierarchical_position=self.hierarchical_position,
                            custom_position_ids=self.custom_position_ids)
        if self.attention_key_size != self.attention_head_size:
            raise ValueError(
                f"NEZHA needs attention_key_size == attention_head_size (its relative position "
                f"embeddings are added to keys and values); got {self.attention_key_size} and "
                f"{self.attention_head_size}")

    def apply_embeddings(self, inputs):
        """Token (+ segment) embeddings -> LN -> dropout (-> mapping): no absolute positions."""
        x = self.apply_token_segment_embeddings(list(inputs))
        x = self.apply_norm(x, "Embedding-Norm")
        x = self.apply(inputs=x, layer=Dropout, rate=self.dropout_rate, name="Embedding-Dropout")
        if self.embedding_size != self.hidden_size:
            x = self.apply(inputs=x, layer=Dense, units=self.hidden_size,
                           kernel_initializer=self.initializer, name="Embedding-Mapping")
        return x

    def attention_inputs(self, inputs, index: int) -> tuple[list, dict]:
        x, arguments = super().attention_inputs(inputs, index)
        x.append(self.compute_position_bias(inputs))
        arguments["p_bias"] = self.position_bias_type
        return x, arguments

    def compute_position_bias(self, inputs=None):
        if self.position_bias is None:
            self.position_bias = self.apply(
                inputs=[inputs, inputs], layer=RelativePositionEmbedding,
                input_dim=2 * self.max_relative_position + 1, output_dim=self.attention_key_size,
                embeddings_initializer=Sinusoidal(), trainable=False,
                name="Embedding-Relative-Position")
        return self.position_bias

    hf_base_prefixes = ("bert.", "nezha.")
