"""Google T5 (t5.1.0, t5.1.1, mT5): encoder, decoder and the encoder-decoder.

Blocks are pre-norm with an RMS-style LayerNorm (no mean, no bias), attention has
no biases and no 1/sqrt(d) scale, and position information is a bucketed
relative bias (``RelativePositionEmbeddingT5``) computed once per stack and
shared by its layers. t5.1.0 ties the output to the token embedding (scaled
by ``hidden_size ** -0.5``); t5.1.1 and mT5 use a gated-GELU feed-forward and a
separate ``Decoder-Output-LM`` kernel, unscaled (as Mesh TF and HF do;
bert4keras 0.11.5 scaled it too).
"""

from __future__ import annotations

import re

import keras

from bert4keras.layers import Activation, CausalMask, Dense, Embedding, ScaleOffset
from bert4keras.layers.t5 import RelativePositionEmbeddingT5
from bert4keras.models.base import LM_Mask, Transformer
from bert4keras.models.keras_model import TransformerModel

VERSIONS = ("t5.1.0", "t5.1.1", "mt5.1.1")


class T5_Base(Transformer):
    """What T5's encoder and decoder share: config, RMS norm and checkpoint layout.

    ``version`` picks the checkpoint naming and defaults: ``'t5.1.0'`` (tied,
    scaled output), ``'t5.1.1'`` / ``'mt5.1.1'`` (untied ``Decoder-Output-LM``;
    mT5 names its norms ``rms_norm``). ``scale_decoder_outputs`` (default: as
    tied) multiplies the decoder output by ``hidden_size ** -0.5`` before the LM
    head. ``hidden_act`` given as a list (e.g. ``['gelu_tanh', 'linear']``) makes
    the feed-forward gated (``wi_0``/``wi_1``).
    """

    def __init__(self, version: str = "t5.1.0", tie_word_embeddings: bool | None = None,
                 scale_decoder_outputs: bool | None = None,
                 relative_attention_num_buckets: int = 32,
                 relative_attention_max_distance: int = 128,
                 num_decoder_layers: int | None = None, **kwargs):
        if version not in VERSIONS:
            raise ValueError(f"unknown T5 version {version!r}; use one of {', '.join(VERSIONS)}")
        kwargs.setdefault("layer_norm_eps", 1e-6)
        super().__init__(**kwargs)
        self.version = version
        self.tie_word_embeddings = (version == "t5.1.0") if tie_word_embeddings is None \
            else tie_word_embeddings
        self.scale_decoder_outputs = self.tie_word_embeddings if scale_decoder_outputs is None \
            else scale_decoder_outputs
        self.relative_attention_num_buckets = relative_attention_num_buckets
        self.relative_attention_max_distance = relative_attention_max_distance
        self.num_decoder_layers = num_decoder_layers or self.num_hidden_layers

    @classmethod
    def normalize_config(cls, configs: dict, model_name: str | None = None) -> dict:
        """Take the version from the model name (``t5.1.1_encoder`` ...) and accept HF
        ``t5``/``mt5`` config keys (``d_model``, ``d_ff``, ``feed_forward_proj``, ...)."""
        name_version = next((v for v in VERSIONS if (model_name or "").startswith(v)), None)
        if "d_model" in configs:
            for hf_key, key in (("d_model", "hidden_size"), ("num_layers", "num_hidden_layers"),
                                ("num_heads", "num_attention_heads"), ("d_kv", "attention_head_size"),
                                ("d_ff", "intermediate_size"), ("layer_norm_epsilon", "layer_norm_eps")):
                if configs.get(hf_key) is not None:
                    configs.setdefault(key, configs[hf_key])
            projection = configs.get("feed_forward_proj", "relu")
            act = projection.split("-")[-1]
            act = "gelu_tanh" if act in ("gelu", "gelu_new") else act
            configs.setdefault("hidden_act", [act, "linear"] if projection.startswith("gated-") else act)
            if configs.get("model_type") == "mt5":  # HF never scales mT5's output
                configs["scale_decoder_outputs"] = False
            if name_version is None:
                gated_untied = projection.startswith("gated-") or not configs.get("tie_word_embeddings", True)
                name_version = ("mt5.1.1" if configs.get("model_type") == "mt5"
                                else "t5.1.1" if gated_untied else "t5.1.0")
        if name_version is not None:
            configs["version"] = name_version
        return configs

    def apply_norm(self, x, name: str):
        """T5's RMS-style LayerNorm: no mean subtraction, no bias."""
        return super().apply_norm(x, name, zero_mean=False, offset=False)

    def apply_attention(self, inputs, name: str, arguments: dict | None = None):
        """T5 attention: no biases, no 1/sqrt(d) score scaling."""
        return super().apply_attention(inputs, name, arguments, use_bias=False, attention_scale=False)

    def apply_feed_forward(self, x, name: str):
        """Bias-free feed-forward (gated when ``hidden_act`` is a list)."""
        return super().apply_feed_forward(x, name, use_bias=False)

    def relative_position(self, inputs, name: str, bidirectional: bool):
        """The relative bias (q_len, k_len, heads) of ``[q, k]`` from the stack's ``name`` table."""
        return self.apply(inputs=inputs, layer=RelativePositionEmbeddingT5,
                          input_dim=self.relative_attention_num_buckets,
                          output_dim=self.num_attention_heads,
                          max_distance=self.relative_attention_max_distance,
                          bidirectional=bidirectional, embeddings_initializer=self.initializer,
                          name=name)

    def load_variable(self, checkpoint, name):
        value = super().load_variable(checkpoint, name)
        if name == "shared/embedding":
            return self.load_embeddings(value)
        if name == "decoder/logits/kernel":
            return self.load_embeddings(value.T).T
        if "relative_attention_bias" in name:
            return value.T
        return value

    def export_variable(self, name, value):
        return value.T if "relative_attention_bias" in name else value

    def variable_mapping(self):
        """The official (Mesh TensorFlow) T5 checkpoint layout."""
        gated = isinstance(self.hidden_act, (list, tuple)) and len(self.hidden_act) > 1
        wi = ["wi_0/kernel", "wi_1/kernel"] if gated else ["wi/kernel"]
        mapping = {
            "Embedding-Token": ["shared/embedding"],
            "Encoder-Embedding-Relative-Position": [
                "encoder/block_000/layer_000/SelfAttention/relative_attention_bias"],
            "Encoder-Output-Norm": ["encoder/final_layer_norm/scale"],
            "Decoder-Embedding-Relative-Position": [
                "decoder/block_000/layer_000/SelfAttention/relative_attention_bias"],
            "Decoder-Output-Norm": ["decoder/final_layer_norm/scale"],
            "Decoder-Output-LM": ["decoder/logits/kernel"],
        }
        for i in range(self.num_hidden_layers):
            p, name = f"encoder/block_{i:03d}/", f"Encoder-Transformer-{i}"
            mapping.update({
                f"{name}-MultiHeadSelfAttention": [p + f"layer_000/SelfAttention/{w}" for w in "qkvo"],
                f"{name}-MultiHeadSelfAttention-Norm": [p + "layer_000/layer_norm/scale"],
                f"{name}-FeedForward": [p + f"layer_001/DenseReluDense/{w}"
                                        for w in wi + ["wo/kernel"]],
                f"{name}-FeedForward-Norm": [p + "layer_001/layer_norm/scale"],
            })
        for i in range(self.num_decoder_layers):
            p, name = f"decoder/block_{i:03d}/", f"Decoder-Transformer-{i}"
            mapping.update({
                f"{name}-MultiHeadSelfAttention": [p + f"layer_000/SelfAttention/{w}" for w in "qkvo"],
                f"{name}-MultiHeadSelfAttention-Norm": [p + "layer_000/layer_norm/scale"],
                f"{name}-MultiHeadCrossAttention": [p + f"layer_001/EncDecAttention/{w}" for w in "qkvo"],
                f"{name}-MultiHeadCrossAttention-Norm": [p + "layer_001/layer_norm/scale"],
                f"{name}-FeedForward": [p + f"layer_002/DenseReluDense/{w}"
                                        for w in wi + ["wo/kernel"]],
                f"{name}-FeedForward-Norm": [p + "layer_002/layer_norm/scale"],
            })
        if self.version == "mt5.1.1":
            mapping = {k: [n.replace("final_layer_norm", "rms_norm").replace("layer_norm", "rms_norm")
                           for n in v] for k, v in mapping.items()}
        return mapping

    hf_base_prefixes = ()

    def hf_variable_name(self, name: str) -> tuple[str, bool]:
        """Google T5 name -> HF ``T5ForConditionalGeneration``/``T5EncoderModel`` name.

        Dense kernels are transposed (HF stores [out, in]); the relative bias is
        [buckets, heads] in HF and [heads, buckets] in the Google layout.
        """
        if name == "shared/embedding":
            return "shared.weight", False
        if name == "decoder/logits/kernel":
            return "lm_head.weight", True
        match = re.fullmatch(r"(encoder|decoder)/(final_layer_norm|rms_norm)/scale", name)
        if match:
            return f"{match.group(1)}.final_layer_norm.weight", False
        match = re.fullmatch(r"(encoder|decoder)/block_(\d+)/layer_(\d+)/(.+)", name)
        if match is None:
            raise KeyError(f"no HF name for T5 variable {name!r}")
        stack, block, sub, rest = match.groups()
        prefix = f"{stack}.block.{int(block)}.layer.{int(sub)}."
        if rest in ("layer_norm/scale", "rms_norm/scale"):
            return prefix + "layer_norm.weight", False
        if rest.endswith("relative_attention_bias"):
            return prefix + "SelfAttention.relative_attention_bias.weight", True
        parts = rest.split("/")
        if parts[-1] == "kernel":
            parts = parts[:-1]
        return prefix + ".".join(parts) + ".weight", True


class T5_Encoder(T5_Base):
    """T5's encoder: token ids -> normalised hidden states (with the padding mask)."""

    def get_inputs(self):
        return self.input_layer("Encoder-Input-Token")

    def apply_embeddings(self, inputs):
        """The shared ``Embedding-Token`` -> dropout (-> mapping to ``hidden_size``)."""
        x = self.apply_token_embedding(inputs)
        x = self.dropout(x, "Encoder-Embedding-Dropout")
        return self.apply_embedding_mapping(x, name="Encoder-Embedding-Mapping")

    def apply_main_layers(self, inputs, index: int):
        """LN -> self-attention -> add, LN -> feed-forward -> add."""
        attention_name = f"Encoder-Transformer-{index}-MultiHeadSelfAttention"
        feed_forward_name = f"Encoder-Transformer-{index}-FeedForward"
        position_bias = self.compute_position_bias(inputs)

        x = self.apply_norm(inputs, f"{attention_name}-Norm")
        x = self.apply_attention([x, x, x, position_bias], attention_name, {"p_bias": "t5_relative"})
        xi = x = self.dropout_add(inputs, x, attention_name)

        x = self.apply_norm(x, f"{feed_forward_name}-Norm")
        x = self.apply_feed_forward(x, feed_forward_name)
        return self.dropout_add(xi, x, feed_forward_name)

    def apply_final_layers(self, inputs):
        x = self.apply_norm(inputs, "Encoder-Output-Norm")
        return self.dropout(x, "Encoder-Output-Dropout")

    def compute_position_bias(self, inputs=None):
        """Bidirectional relative bias, created once and shared by every encoder layer."""
        if self.position_bias is None:
            self.position_bias = self.relative_position(
                [inputs, inputs], "Encoder-Embedding-Relative-Position", bidirectional=True)
        return self.position_bias


class T5_Decoder(LM_Mask, T5_Base):
    """T5's decoder: ``[encoder output, decoder token ids]`` -> token probabilities.

    ``with_lm`` (True = softmax, or an activation such as ``'linear'``) adds the LM
    head; ``cross_position_bias=True`` also adds the decoder's relative bias to
    cross-attention, as bert4keras 0.11.5 did by default (T5 and HF do not).
    """

    def __init__(self, with_lm=True, cross_position_bias: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_hidden_layers = self.num_decoder_layers
        self.with_lm = with_lm
        self.cross_position_bias = cross_position_bias

    def get_inputs(self):
        context = self.apply(layer=keras.layers.Input, shape=(self.sequence_length, self.hidden_size),
                             name="Input-Context")
        return [context, self.input_layer("Decoder-Input-Token")]

    def apply_embeddings(self, inputs):
        """The shared ``Embedding-Token`` -> dropout (-> mapping); the context passes through."""
        context, x = inputs
        x = self.apply_token_embedding(x)
        x = self.dropout(x, "Decoder-Embedding-Dropout")
        return [context, self.apply_embedding_mapping(x, name="Decoder-Embedding-Mapping")]

    def apply_main_layers(self, inputs, index: int):
        """LN -> causal self-attention -> add, LN -> cross-attention -> add, LN -> FFN -> add."""
        c, x = inputs
        self_name = f"Decoder-Transformer-{index}-MultiHeadSelfAttention"
        cross_name = f"Decoder-Transformer-{index}-MultiHeadCrossAttention"
        feed_forward_name = f"Decoder-Transformer-{index}-FeedForward"
        attention_mask = self.compute_attention_bias()
        self_bias, cross_bias = self.compute_position_bias([x, c])

        h = self.apply_norm(x, f"{self_name}-Norm")
        h = self.apply_attention([h, h, h, attention_mask, self_bias], self_name,
                                 {"a_bias": True, "p_bias": "t5_relative"})
        x = self.dropout_add(x, h, self_name)

        h = self.apply_norm(x, f"{cross_name}-Norm")
        if cross_bias is None:
            h = self.apply_attention([h, c, c], cross_name, {})
        else:
            h = self.apply_attention([h, c, c, cross_bias], cross_name, {"p_bias": "t5_relative"})
        x = self.dropout_add(x, h, cross_name)

        h = self.apply_norm(x, f"{feed_forward_name}-Norm")
        h = self.apply_feed_forward(h, feed_forward_name)
        return [c, self.dropout_add(x, h, feed_forward_name)]

    def apply_final_layers(self, inputs):
        """Final norm, then the LM head: the tied token embedding (t5.1.0) or the
        separate ``Decoder-Output-LM`` kernel (t5.1.1, mT5)."""
        _, x = inputs
        x = self.apply_norm(x, "Decoder-Output-Norm")
        x = self.dropout(x, "Decoder-Output-Dropout")
        if not self.with_lm:
            return x
        lm_activation = "softmax" if self.with_lm is True else self.with_lm
        if self.scale_decoder_outputs:
            x = self.apply(inputs=x, layer=ScaleOffset, scale=self.hidden_size ** -0.5, offset=False,
                           name="Decoder-Output-Scale")
        if not self.tie_word_embeddings:
            return self.apply(inputs=x, layer=Dense, units=self.vocab_size, activation=lm_activation,
                              use_bias=False, kernel_initializer=self.initializer,
                              name="Decoder-Output-LM")
        if self.embedding_size != self.hidden_size:
            x = self.apply(inputs=x, layer=Dense, units=self.embedding_size,
                           kernel_initializer=self.initializer, name="Decoder-Output-Mapping")
        x = self.apply(inputs=x, layer=Embedding, arguments={"mode": "dense"}, name="Embedding-Token")
        return self.apply(inputs=x, layer=Activation, activation=lm_activation,
                          name="Decoder-Output-LM-Activation")

    def compute_attention_bias(self, inputs=None):
        """Causal mask over the decoder tokens (graph input 1; input 0 is the context)."""
        if self.attention_bias is None:
            self.attention_bias = self.apply(inputs=self.graph_inputs[1], layer=CausalMask,
                                             name="Attention-LM-Mask")
        return self.attention_bias

    def compute_position_bias(self, inputs=None):
        """Unidirectional relative bias for self-attention (and, if enabled, cross-attention)."""
        if self.position_bias is None:
            x, c = inputs
            name = "Decoder-Embedding-Relative-Position"
            self_bias = self.relative_position([x, x], name, bidirectional=False)
            cross_bias = self.relative_position([x, c], name, bidirectional=False) \
                if self.cross_position_bias else None
            self.position_bias = (self_bias, cross_bias)
        return self.position_bias


class T5(T5_Base):
    """T5 encoder-decoder sharing one layer registry (so one ``Embedding-Token``).

    After ``build()``: ``.encoder`` (token ids -> context), ``.decoder`` ([context,
    decoder ids] -> probabilities) and ``.model`` ([encoder ids, decoder ids] ->
    probabilities) are Keras models over the same weights.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        kwargs["layers"] = self.layers
        name = kwargs.pop("name", None)
        self._encoder = T5_Encoder(name=f"{name}_Encoder" if name else "Encoder", **kwargs)
        self._decoder = T5_Decoder(name=f"{name}_Decoder" if name else "Decoder", **kwargs)

    def build(self, **kwargs):
        """Build encoder and decoder, then wire the encoder's output into the decoder."""
        if self.built:
            return
        self._encoder.build(**kwargs)
        self._decoder.build(**kwargs)
        self.encoder, self.decoder = self._encoder.model, self._decoder.model
        self.set_inputs(self.encoder.inputs + self.decoder.inputs[1:])
        self.set_outputs(self._decoder.call(self.encoder.outputs + self.decoder.inputs[1:]))
        self.model = TransformerModel(self.inputs, self.output, name=self.name)
        self.model.transformer = self  # for model.generate()
        self.built = True
