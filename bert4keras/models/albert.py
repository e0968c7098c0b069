"""ALBERT (arXiv:1909.11942), and ALBERT_Unshared: the same checkpoint with one copy of
the shared block per layer, so the layers can be fine-tuned apart."""

from __future__ import annotations

import re

from bert4keras.checkpoints.views import GoogleNameView
from bert4keras.models.bert import BERT, google_to_hf_name

ALBERT_GROUP = "bert/encoder/transformer/group_0/inner_group_0/"
"""Where ALBERT checkpoints keep the one shared block."""

_HF_BLOCK = {
    "attention_1/self/query": "attention/query",
    "attention_1/self/key": "attention/key",
    "attention_1/self/value": "attention/value",
    "attention_1/output/dense": "attention/dense",
    "LayerNorm": "attention/LayerNorm",
    "ffn_1/intermediate/dense": "ffn",
    "ffn_1/intermediate/output/dense": "ffn_output",
    "LayerNorm_1": "full_layer_layer_norm",
}
_HF_HEADS = {
    "bert/pooler/dense/": "albert/pooler/",
    "cls/predictions/transform/dense/": "predictions/dense/",
    "cls/predictions/transform/LayerNorm/": "predictions/LayerNorm/",
}
_HF_SPECIAL = {
    "cls/predictions/output_bias": ("predictions.bias", False),
    "cls/seq_relationship/output_weights": ("sop_classifier.classifier.weight", False),
    "cls/seq_relationship/output_bias": ("sop_classifier.classifier.bias", False),
}


def albert_block_mapping(prefix: str = ALBERT_GROUP) -> dict[str, list[str]]:
    """Checkpoint names of the shared block, keyed by the suffix of the layer name."""
    return {
        "MultiHeadSelfAttention": [
            prefix + "attention_1/self/query/kernel", prefix + "attention_1/self/query/bias",
            prefix + "attention_1/self/key/kernel", prefix + "attention_1/self/key/bias",
            prefix + "attention_1/self/value/kernel", prefix + "attention_1/self/value/bias",
            prefix + "attention_1/output/dense/kernel", prefix + "attention_1/output/dense/bias",
        ],
        "MultiHeadSelfAttention-Norm": [prefix + "LayerNorm/beta", prefix + "LayerNorm/gamma"],
        "FeedForward": [
            prefix + "ffn_1/intermediate/dense/kernel", prefix + "ffn_1/intermediate/dense/bias",
            prefix + "ffn_1/intermediate/output/dense/kernel",
            prefix + "ffn_1/intermediate/output/dense/bias",
        ],
        "FeedForward-Norm": [prefix + "LayerNorm_1/beta", prefix + "LayerNorm_1/gamma"],
    }


class ALBERT(BERT):
    """BERT with factorised embeddings and one block shared by every layer.

    Sharing comes from the registry: every layer index uses the same names
    (``Transformer-MultiHeadSelfAttention``, ...). ``Embedding-Mapping`` is always
    built, because ALBERT checkpoints always carry that projection.
    """

    def apply_embedding_mapping(self, x, **overrides):
        return super().apply_embedding_mapping(x, always=True, **overrides)

    def block_names(self, index: int) -> tuple[str, str]:
        return "Transformer-MultiHeadSelfAttention", "Transformer-FeedForward"

    def variable_mapping(self):
        mapping = self.non_block_mapping()
        for suffix, names in albert_block_mapping().items():
            mapping[f"Transformer-{suffix}"] = names
        return mapping

    def non_block_mapping(self) -> dict[str, list[str]]:
        """Embeddings and heads: named as in BERT."""
        return {k: v for k, v in BERT.variable_mapping(self).items()
                if not k.startswith("Transformer-")}

    hf_base_prefixes = ("albert.",)
    hf_tied_names = {"predictions.decoder.weight": "bert/embeddings/word_embeddings",
                     "predictions.decoder.bias": "cls/predictions/output_bias"}

    def hf_variable_name(self, name: str) -> tuple[str, bool]:
        """Google ALBERT name -> HF ``AlbertModel``/``AlbertForPreTraining`` name."""
        if name in _HF_SPECIAL:
            return _HF_SPECIAL[name]
        match = re.fullmatch(r"bert/encoder/transformer/group_(\d+)/inner_group_(\d+)/(.+)/(\w+)",
                             name)
        if match and match.group(3) in _HF_BLOCK:
            group, inner, module, leaf = match.groups()
            return google_to_hf_name(f"albert/encoder/albert_layer_groups/{group}/albert_layers/"
                                     f"{inner}/{_HF_BLOCK[module]}/{leaf}")
        for google, hf in _HF_HEADS.items():
            if name.startswith(google):
                return google_to_hf_name(hf + name[len(google):])
        if name.startswith("bert/"):
            name = "albert/" + name[len("bert/"):]
        return google_to_hf_name(name)


class ALBERT_Unshared(ALBERT):
    """ALBERT used as a BERT: each layer gets its own copy of the shared block.

    Loading an ALBERT checkpoint initialises every copy identically. Checkpoints
    are saved in BERT's per-layer layout (one group cannot hold L different
    blocks), and loading accepts that layout too, so a fine-tuned model reloads.
    """

    def block_names(self, index: int) -> tuple[str, str]:
        return BERT.block_names(self, index)

    def variable_mapping(self):
        mapping = self.non_block_mapping()
        for i in range(self.num_hidden_layers):
            for suffix, names in albert_block_mapping().items():
                mapping[f"Transformer-{i}-{suffix}"] = names
        return mapping

    def unshared_variable_mapping(self) -> dict[str, list[str]]:
        """BERT's per-layer names (``bert/encoder/layer_i/...``): the layout this model saves."""
        return BERT.variable_mapping(self)

    def load_weights_from_checkpoint(self, checkpoint, mapping: dict | None = None) -> None:
        view = checkpoint
        if not isinstance(view, GoogleNameView):
            view = self.checkpoint_view(checkpoint)
        if mapping is None and "bert/encoder/layer_0/attention/self/query/kernel" in view:
            mapping = self.unshared_variable_mapping()
        super().load_weights_from_checkpoint(view, mapping)

    def save_weights_as_checkpoint(self, filename: str, mapping: dict | None = None,
                                   dtype: str | None = None) -> None:
        super().save_weights_as_checkpoint(filename, mapping or self.unshared_variable_mapping(),
                                           dtype)
