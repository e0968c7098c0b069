"""BERT (and RoBERTa, which shares its architecture and checkpoint layout)."""

from __future__ import annotations

import re

from bert4keras.backend import get_activation
from bert4keras.layers import (
    Activation, BiasAdd, Dense, PositionEmbedding, TokenSlice,
)
from bert4keras.models.base import Transformer


class BERT(Transformer):
    """BERT: token + segment + position embeddings, post-LN encoder blocks, optional heads.

    Heads: ``with_pool`` ([CLS] -> Dense; True means tanh, or give an
    activation), ``with_nsp`` (next-sentence probabilities, implies the pooler),
    ``with_mlm`` (tied-embedding MLM; True means softmax, or give an activation
    such as ``'linear'`` for logits).

    The class attributes below are the switches BERT's relatives (NEZHA, RoFormer,
    RoFormerV2, GPT) set instead of re-writing the block.
    """

    use_bias = True
    """Biases in the attention and feed-forward layers (RoFormerV2 has none)."""
    absolute_positions = True
    """A learned ``Embedding-Position`` table; NEZHA and RoFormer set ``position_bias_type``
    (relative, rotary) instead."""

    def __init__(self, max_position: int, segment_vocab_size: int = 2, with_pool=False,
                 with_nsp=False, with_mlm=False, hierarchical_position=None,
                 custom_position_ids: bool = False, shared_segment_embeddings: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.max_position = max_position
        self.segment_vocab_size = segment_vocab_size
        self.with_pool = with_pool if with_pool or not with_nsp else True  # NSP needs the pooler
        self.with_nsp = with_nsp
        self.with_mlm = with_mlm
        self.hierarchical_position = hierarchical_position
        self.custom_position_ids = custom_position_ids
        self.shared_segment_embeddings = shared_segment_embeddings

    def get_inputs(self):
        inputs = [self.input_layer("Input-Token")]
        if self.segment_vocab_size > 0:
            inputs.append(self.input_layer("Input-Segment"))
        if self.custom_position_ids:
            inputs.append(self.input_layer("Input-Position"))
        return inputs

    def apply_embeddings(self, inputs):
        """Summed input embeddings -> LN -> dropout (-> mapping to ``hidden_size``)."""
        x = self.apply_input_embeddings(inputs)
        x = self.apply_norm(x, "Embedding-Norm")
        x = self.dropout(x, "Embedding-Dropout")
        return self.apply_embedding_mapping(x)

    def apply_input_embeddings(self, inputs):
        """Token + segment (``segment_vocab_size > 0``) + learned position
        (``absolute_positions``) embeddings of the raw inputs, summed."""
        inputs = list(inputs) if isinstance(inputs, list) else [inputs]
        x = self.apply_token_embedding(inputs.pop(0))
        if self.segment_vocab_size > 0:
            x = self.apply_segment_embedding(x, inputs.pop(0), self.segment_vocab_size,
                                             shared=self.shared_segment_embeddings)
        if self.absolute_positions:
            p = inputs.pop(0) if self.custom_position_ids else None
            x = self.apply(inputs=self.simplify([x, p]), layer=PositionEmbedding,
                           input_dim=self.max_position, output_dim=self.embedding_size,
                           merge_mode="add", hierarchical=self.hierarchical_position,
                           embeddings_initializer=self.initializer,
                           custom_position_ids=self.custom_position_ids, name="Embedding-Position")
        return x

    def block_names(self, index: int) -> tuple[str, str]:
        """Names of block ``index``'s attention and feed-forward layers (ALBERT shares one)."""
        return f"Transformer-{index}-MultiHeadSelfAttention", f"Transformer-{index}-FeedForward"

    def apply_main_layers(self, inputs, index: int):
        """Post-LN block: attention -> dropout, add -> LN -> feed-forward -> dropout, add -> LN."""
        attention_name, feed_forward_name = self.block_names(index)
        x, arguments = self.attention_inputs(inputs)
        x = self.apply_attention(x, attention_name, arguments, use_bias=self.use_bias)
        x = self.apply_norm(self.dropout_add(inputs, x, attention_name), f"{attention_name}-Norm")
        y = self.apply_feed_forward(x, feed_forward_name, use_bias=self.use_bias)
        return self.apply_norm(self.dropout_add(x, y, feed_forward_name), f"{feed_forward_name}-Norm")

    def apply_final_layers(self, inputs):
        """Sequence output plus the requested heads (pooler/NSP, MLM)."""
        outputs = [inputs]
        if self.with_pool:
            x = self.apply(inputs=inputs, layer=TokenSlice, index=0, name="Pooler")
            pool_activation = "tanh" if self.with_pool is True else self.with_pool
            x = self.apply(inputs=x, layer=Dense, units=self.hidden_size,
                           activation=pool_activation, kernel_initializer=self.initializer,
                           name="Pooler-Dense")
            if self.with_nsp:
                x = self.apply(inputs=x, layer=Dense, units=2, activation="softmax",
                               kernel_initializer=self.initializer, name="NSP-Proba")
            outputs.append(x)
        if self.with_mlm:
            x = self.apply(inputs=inputs, layer=Dense, units=self.embedding_size,
                           activation=get_activation(self.hidden_act),
                           kernel_initializer=self.initializer, name="MLM-Dense")
            x = self.apply_norm(x, "MLM-Norm")
            x = self.apply_tied_output(x)
            x = self.apply(inputs=x, layer=BiasAdd, name="MLM-Bias")
            mlm_activation = "softmax" if self.with_mlm is True else self.with_mlm
            x = self.apply(inputs=x, layer=Activation, activation=mlm_activation,
                           name="MLM-Activation")
            outputs.append(x)
        if len(outputs) == 1:
            return outputs[0]
        if len(outputs) == 2:
            return outputs[1]
        return outputs[1:]

    def load_variable(self, checkpoint, name):
        value = super().load_variable(checkpoint, name)
        if name in ("bert/embeddings/word_embeddings", "cls/predictions/output_bias"):
            return self.load_embeddings(value)
        if name == "cls/seq_relationship/output_weights":
            return value.T
        return value

    def export_variable(self, name, value):
        if name == "cls/seq_relationship/output_weights":
            return value.T
        return value

    def variable_mapping(self):
        mapping = {
            "Embedding-Token": ["bert/embeddings/word_embeddings"],
            "Embedding-Segment": ["bert/embeddings/token_type_embeddings"],
            "Embedding-Position": ["bert/embeddings/position_embeddings"],
            "Embedding-Norm": ["bert/embeddings/LayerNorm/beta", "bert/embeddings/LayerNorm/gamma"],
            "Embedding-Mapping": ["bert/encoder/embedding_hidden_mapping_in/kernel",
                                  "bert/encoder/embedding_hidden_mapping_in/bias"],
            "Pooler-Dense": ["bert/pooler/dense/kernel", "bert/pooler/dense/bias"],
            "NSP-Proba": ["cls/seq_relationship/output_weights", "cls/seq_relationship/output_bias"],
            "MLM-Dense": ["cls/predictions/transform/dense/kernel",
                          "cls/predictions/transform/dense/bias"],
            "MLM-Norm": ["cls/predictions/transform/LayerNorm/beta",
                         "cls/predictions/transform/LayerNorm/gamma"],
            "MLM-Bias": ["cls/predictions/output_bias"],
        }
        for i in range(self.num_hidden_layers):
            p = f"bert/encoder/layer_{i}/"
            mapping.update({
                f"Transformer-{i}-MultiHeadSelfAttention": [
                    p + "attention/self/query/kernel", p + "attention/self/query/bias",
                    p + "attention/self/key/kernel", p + "attention/self/key/bias",
                    p + "attention/self/value/kernel", p + "attention/self/value/bias",
                    p + "attention/output/dense/kernel", p + "attention/output/dense/bias",
                ],
                f"Transformer-{i}-MultiHeadSelfAttention-Norm": [
                    p + "attention/output/LayerNorm/beta", p + "attention/output/LayerNorm/gamma",
                ],
                f"Transformer-{i}-FeedForward": [
                    p + "intermediate/dense/kernel", p + "intermediate/dense/bias",
                    p + "output/dense/kernel", p + "output/dense/bias",
                ],
                f"Transformer-{i}-FeedForward-Norm": [
                    p + "output/LayerNorm/beta", p + "output/LayerNorm/gamma",
                ],
            })
        return mapping

    hf_base_prefixes = ("bert.", "roberta.")
    hf_tied_names = {"cls.predictions.decoder.weight": "bert/embeddings/word_embeddings",
                     "cls.predictions.decoder.bias": "cls/predictions/output_bias"}

    def hf_variable_name(self, name: str) -> tuple[str, bool]:
        """Google BERT name -> HF ``BertModel``/``BertForPreTraining`` name (kernels transposed)."""
        special = {
            "cls/predictions/output_bias": ("cls.predictions.bias", False),
            "cls/seq_relationship/output_weights": ("cls.seq_relationship.weight", False),
            "cls/seq_relationship/output_bias": ("cls.seq_relationship.bias", False),
            "bert/encoder/embedding_hidden_mapping_in/kernel":
                ("bert.encoder.embedding_hidden_mapping_in.weight", True),
        }
        if name in special:
            return special[name]
        return google_to_hf_name(name)


def google_to_hf_name(name: str) -> tuple[str, bool]:
    """Generic rule: ``a/layer_3/b/kernel`` -> ``a.layer.3.b.weight`` (transposed);
    ``gamma``/``beta`` -> ``weight``/``bias``; ``*_embeddings`` -> ``*_embeddings.weight``."""
    parts = re.sub(r"layer_(\d+)", r"layer.\1", name).split("/")
    last = parts[-1]
    transpose = False
    if last == "kernel":
        parts[-1], transpose = "weight", True
    elif last == "gamma":
        parts[-1] = "weight"
    elif last == "beta":
        parts[-1] = "bias"
    elif last.endswith("embeddings"):
        parts.append("weight")
    return ".".join(parts), transpose
