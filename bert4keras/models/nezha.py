"""NEZHA (arXiv:1909.00204): BERT with functional relative positions instead of a
position table."""

from __future__ import annotations

from bert4keras.backend import Sinusoidal
from bert4keras.layers import RelativePositionEmbedding
from bert4keras.models.bert import BERT


class NEZHA(BERT):
    """BERT whose attention adds fixed sinusoidal embeddings of the clipped relative
    distance to keys and values (``p_bias='typical_relative'``, arXiv:1803.02155).

    Distances beyond ``max_relative_position`` (64, as NEZHA was trained) are clipped.
    Checkpoints use BERT's names; there is no position table to load.
    """

    absolute_positions = False
    position_bias_type = "typical_relative"

    def __init__(self, max_relative_position: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.max_relative_position = max_relative_position
        self.reject_options(hierarchical_position=self.hierarchical_position,
                            custom_position_ids=self.custom_position_ids)
        if self.attention_key_size != self.attention_head_size:
            raise ValueError(
                f"NEZHA needs attention_key_size == attention_head_size (its relative position "
                f"embeddings are added to keys and values); got {self.attention_key_size} and "
                f"{self.attention_head_size}")

    def compute_position_bias(self, inputs=None):
        """The relative position embeddings of ``inputs`` against itself, shared by every layer."""
        if self.position_bias is None:
            self.position_bias = self.apply(
                inputs=[inputs, inputs], layer=RelativePositionEmbedding,
                input_dim=2 * self.max_relative_position + 1, output_dim=self.attention_key_size,
                embeddings_initializer=Sinusoidal(), trainable=False,
                name="Embedding-Relative-Position")
        return self.position_bias

    hf_base_prefixes = ("bert.", "nezha.")
