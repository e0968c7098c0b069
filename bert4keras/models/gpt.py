"""Decoder-only language models: OpenAI GPT, GPT-2 and GPT2_ML.

All three are causal (``LM_Mask``) and predict tokens through the tied token
embedding (``Embedding-Token`` in ``mode='dense'``, no bias). They differ in
block order: GPT is post-LN like BERT, GPT-2 is pre-LN with a final norm, and
GPT2_ML (Grover, arXiv:1905.12616) normalises the embeddings and splits the FFN norms.
"""

from __future__ import annotations

import re

from bert4keras.layers import Activation
from bert4keras.models.base import LM_Mask
from bert4keras.models.bert import BERT

# HF names of OpenAI GPT / GPT-2 blocks (``Conv1D`` weights are stored [in, out],
# Keras's layout, so nothing is transposed). q, k and v share the fused ``c_attn``.
_HF_GPT_BLOCK = {
    "attention/self/query": "attn.c_attn",
    "attention/self/key": "attn.c_attn",
    "attention/self/value": "attn.c_attn",
    "attention/output/dense": "attn.c_proj",
    "intermediate/dense": "mlp.c_fc",
    "output/dense": "mlp.c_proj",
}
_HF_PARAM = {"kernel": "weight", "gamma": "weight", "bias": "bias", "beta": "bias"}
_QKV = ("attention/self/query", "attention/self/key", "attention/self/value")


class GPT(LM_Mask, BERT):
    """OpenAI GPT: token (+ segment) + position embeddings, BERT's post-LN blocks under
    a causal mask, tied-embedding output with ``final_activation`` (softmax).

    ``shared_segment_embeddings=True`` embeds segment ids with the token table, as
    HF's ``token_type_ids`` do; configs read from an HF ``config.json`` default to
    no segment input. The output is always the LM head, so BERT's ``with_pool`` and
    ``with_nsp`` are rejected and ``with_mlm`` changes nothing.
    """

    segment_inputs = True
    """Whether segment ids are an input at all (GPT-2 and GPT2_ML take token ids only)."""

    def __init__(self, final_activation="softmax", **kwargs):
        kwargs.setdefault("layer_norm_eps", 1e-5)
        super().__init__(**kwargs)
        self.reject_options(with_pool=self.with_pool, with_nsp=self.with_nsp)
        if not self.segment_inputs:
            self.segment_vocab_size = 0
        self.final_activation = final_activation

    @classmethod
    def normalize_config(cls, configs: dict, model_name: str | None = None) -> dict:
        """Accept HF ``openai-gpt``/``gpt2`` config keys (``n_embd``, ``n_layer``, ...)."""
        if "n_embd" not in configs:
            return configs
        hidden = configs["n_embd"]
        for hf_key, key in (("n_embd", "hidden_size"), ("n_layer", "num_hidden_layers"),
                            ("n_head", "num_attention_heads"), ("n_positions", "max_position"),
                            ("layer_norm_epsilon", "layer_norm_eps"), ("resid_pdrop", "dropout_rate"),
                            ("attn_pdrop", "attention_dropout_rate")):
            if configs.get(hf_key) is not None:
                configs.setdefault(key, configs[hf_key])
        configs.setdefault("intermediate_size", configs.get("n_inner") or 4 * hidden)
        act = configs.get("activation_function") or configs.get("afn")
        if act is not None:
            # HF's OpenAI GPT means the tanh approximation by "gelu".
            tanh_names = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast")
            configs.setdefault("hidden_act", "gelu_tanh" if act in tanh_names else act)
        configs.setdefault("segment_vocab_size", 0)
        return configs

    def apply_embeddings(self, inputs):
        """Summed input embeddings -> dropout (-> mapping); unlike BERT, no LayerNorm."""
        x = self.apply_input_embeddings(inputs)
        x = self.dropout(x, "Embedding-Dropout")
        return self.apply_embedding_mapping(x)

    def apply_final_layers(self, inputs):
        """Logits through the tied token embedding, then ``final_activation``."""
        x = self.apply_tied_output(inputs)
        return self.apply(inputs=x, layer=Activation, activation=self.final_activation,
                          name="LM-Activation")

    word_embeddings_name = "gpt/embeddings/word_embeddings"

    def load_variable(self, checkpoint, name):
        value = super().load_variable(checkpoint, name)
        if name == self.word_embeddings_name:
            return self.load_embeddings(value)
        found = checkpoint.resolve(name)
        if found is not None and ".c_attn." in found[0]:
            return self._split_fused_qkv(name, value)
        return value

    def _split_fused_qkv(self, name: str, value):
        """Slice q, k or v out of HF's fused ``c_attn`` ([in, q|k|v] or [q|k|v])."""
        qk = self.num_attention_heads * self.attention_key_size
        v = self.num_attention_heads * self.attention_head_size
        part = next(i for i, p in enumerate(_QKV) if f"/{p}/" in name)
        start, width = [(0, qk), (qk, qk), (2 * qk, v)][part]
        if value.shape[-1] != 2 * qk + v:
            raise ValueError(f"fused attention weight for {name!r} has shape {value.shape}; "
                             f"expected last dimension {2 * qk + v} (q, k and v of "
                             f"{self.num_attention_heads} heads)")
        return value[..., start:start + width]

    def variable_mapping(self):
        """BERT's layout under ``gpt/`` (``bert/encoder`` -> ``gpt/transformer``)."""
        return {
            k: [n.replace("bert/", "gpt/").replace("encoder", "transformer") for n in v]
            for k, v in super().variable_mapping().items()
        }

    hf_base_prefixes = ("transformer.",)

    def hf_variable_name(self, name: str) -> tuple[str, bool]:
        """Google GPT name -> HF ``OpenAIGPTModel``/``OpenAIGPTLMHeadModel`` name."""
        embeddings = {"gpt/embeddings/word_embeddings": "tokens_embed.weight",
                      "gpt/embeddings/position_embeddings": "positions_embed.weight"}
        if name in embeddings:
            return embeddings[name], False
        norms = {"attention/output/LayerNorm": "ln_1", "output/LayerNorm": "ln_2"}
        return _hf_block_name(name, norms)


def _hf_block_name(name: str, norms: dict[str, str]) -> tuple[str, bool]:
    """``gpt/transformer/layer_3/<part>/<param>`` -> ``h.3.<module>.<param>``."""
    match = re.fullmatch(r"gpt/transformer/layer_(\d+)/(.+)/(kernel|bias|gamma|beta)", name)
    module = match and ({**_HF_GPT_BLOCK, **norms}.get(match.group(2)))
    if module is None:
        raise KeyError(f"no HF name for GPT variable {name!r}")
    return f"h.{match.group(1)}.{module}.{_HF_PARAM[match.group(3)]}", False


class GPT2(GPT):
    """OpenAI GPT-2: token + position embeddings, pre-LN blocks, a final ``Output-Norm``."""

    segment_inputs = False

    def apply_main_layers(self, inputs, index: int):
        """Pre-LN block: LN -> attention -> dropout, add; LN -> feed-forward -> dropout, add."""
        attention_name = f"Transformer-{index}-MultiHeadSelfAttention"
        feed_forward_name = f"Transformer-{index}-FeedForward"
        x = self.apply_norm(inputs, f"{attention_name}-Norm")
        x, arguments = self.attention_inputs(x)
        x = self.apply_attention(x, attention_name, arguments)
        xi = x = self.dropout_add(inputs, x, attention_name)
        x = self.apply_norm(x, f"{feed_forward_name}-Norm")
        x = self.apply_feed_forward(x, feed_forward_name)
        return self.dropout_add(xi, x, feed_forward_name)

    def apply_final_layers(self, inputs):
        x = self.apply_norm(inputs, "Output-Norm")
        x = self.dropout(x, "Output-Dropout")
        return super().apply_final_layers(x)

    def variable_mapping(self):
        """GPT's layout with pre-LN norm names (``*/input/LayerNorm``) and ``gpt/output``."""
        mapping = {k: [n.replace("output/LayerNorm", "input/LayerNorm") for n in v]
                   for k, v in super().variable_mapping().items()}
        mapping["Output-Norm"] = ["gpt/output/LayerNorm/beta", "gpt/output/LayerNorm/gamma"]
        return mapping

    def hf_variable_name(self, name: str) -> tuple[str, bool]:
        """Google GPT-2 name -> HF ``GPT2Model``/``GPT2LMHeadModel`` name."""
        top = {"gpt/embeddings/word_embeddings": "wte.weight",
               "gpt/embeddings/position_embeddings": "wpe.weight",
               "gpt/output/LayerNorm/gamma": "ln_f.weight",
               "gpt/output/LayerNorm/beta": "ln_f.bias"}
        if name in top:
            return top[name], False
        norms = {"attention/input/LayerNorm": "ln_1", "input/LayerNorm": "ln_2"}
        return _hf_block_name(name, norms)


class GPT2_ML(GPT):
    """GPT2_ML (Grover's block): normalised embeddings; attention -> add -> LN0 ->
    feed-forward -> add (to the un-normalised sum) -> LN1."""

    segment_inputs = False

    def apply_embeddings(self, inputs):
        """Token + position embeddings -> LN (-> mapping); no embedding dropout."""
        x = self.apply_input_embeddings(inputs)
        x = self.apply_norm(x, "Embedding-Norm")
        return self.apply_embedding_mapping(x)

    def apply_main_layers(self, inputs, index: int):
        attention_name = f"Transformer-{index}-MultiHeadSelfAttention"
        feed_forward_name = f"Transformer-{index}-FeedForward"
        x, arguments = self.attention_inputs(inputs)
        x = self.apply_attention(x, attention_name, arguments)
        xi = x = self.dropout_add(inputs, x, attention_name)
        x = self.apply_norm(x, f"{feed_forward_name}-Norm-0")
        x = self.apply_feed_forward(x, feed_forward_name)
        x = self.dropout_add(xi, x, feed_forward_name)
        return self.apply_norm(x, f"{feed_forward_name}-Norm-1")

    word_embeddings_name = "newslm/embeddings/word_embed"

    def variable_mapping(self):
        """The official GPT2_ML (``newslm/``) checkpoint layout."""
        mapping = {
            "Embedding-Token": ["newslm/embeddings/word_embed"],
            "Embedding-Position": ["newslm/embeddings/pos_embed"],
            "Embedding-Norm": ["newslm/embeddings/LayerNorm_embed_norm/beta",
                               "newslm/embeddings/LayerNorm_embed_norm/gamma"],
        }
        for i in range(self.num_hidden_layers):
            p = f"newslm/layer{i:02d}/"
            mapping.update({
                f"Transformer-{i}-MultiHeadSelfAttention": [
                    p + f"{part}/{param}"
                    for part in ("query_layer", "key_layer", "value_layer", "context_projection_layer")
                    for param in ("kernel", "bias")
                ],
                f"Transformer-{i}-FeedForward-Norm-0": [p + "LayerNorm_mlp_ln0/beta",
                                                       p + "LayerNorm_mlp_ln0/gamma"],
                f"Transformer-{i}-FeedForward": [p + "intermediate/kernel", p + "intermediate/bias",
                                                 p + "output/kernel", p + "output/bias"],
                f"Transformer-{i}-FeedForward-Norm-1": [p + "LayerNorm_mlp_ln1/beta",
                                                       p + "LayerNorm_mlp_ln1/gamma"],
            })
        return mapping
