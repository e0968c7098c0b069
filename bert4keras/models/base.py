"""The ``Transformer`` base class: a name-keyed layer registry and checkpoint mapping.

A model is built as ``apply_embeddings -> apply_main_layers(i) -> apply_final_layers``.
Every layer is created through :meth:`Transformer.apply`, keyed by name: calling
``apply`` again with the same name re-uses the layer (ALBERT's sharing, GPT's
tied output). ``variable_mapping()`` says, as data, which checkpoint variable
feeds which layer weight; every checkpoint format is read through it.

The hooks keep no state across graphs: ``call()`` starts each graph afresh and
records its raw inputs in ``self.graph_inputs``, which the mask hooks read, so
the same hooks and layers can build a second graph over the same weights.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from bert4keras.backend import is_bool
from bert4keras.checkpoints import CheckpointError, open_checkpoint
from bert4keras.checkpoints.resize import orthogonally_resize
from bert4keras.checkpoints.views import GoogleNameView
from bert4keras.layers import (
    Add, Dense, Dropout, Embedding, FeedForward, GatedAttentionUnit, Input, LayerNormalization,
    MultiHeadAttention, ScaleOffset, TalkingHeadsAttention,
)
from bert4keras.layers.initializers import TruncatedNormal, deferral_active, initializing_layer
from bert4keras.models.keras_model import TransformerModel
from bert4keras.recompute import recompute_enabled, recompute_layer

RECOMPUTED_LAYERS = (ScaleOffset, MultiHeadAttention, FeedForward, GatedAttentionUnit)
"""Layers whose ``call`` is recomputed in the backward pass when a model is built with recompute
(those bert4keras decorated with ``recompute_grad``; ScaleOffset covers LayerNormalization)."""


class Transformer:
    """Base class of every model; subclasses override the ``apply_*`` hooks."""

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        num_hidden_layers: int,
        num_attention_heads: int,
        intermediate_size: int,
        hidden_act="gelu",
        dropout_rate: float | None = None,
        attention_dropout_rate: float | None = None,
        embedding_size: int | None = None,
        attention_head_size: int | None = None,
        attention_key_size: int | None = None,
        sequence_length: int | None = None,
        keep_tokens=None,
        compound_tokens=None,
        residual_attention_scores: bool = False,
        talking_heads: bool = False,
        ignore_invalid_weights: bool = False,
        autoresize_weights: bool = False,
        allow_nonfinite_weights: bool = False,
        layers: dict | None = None,
        prefix: str | None = None,
        name: str | None = None,
        layer_norm_eps: float = 1e-12,
        recompute: bool | None = None,
        **kwargs,
    ):
        if keep_tokens is not None:
            vocab_size = len(keep_tokens)
        if compound_tokens is not None:
            vocab_size += len(compound_tokens)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.attention_head_size = attention_head_size or hidden_size // num_attention_heads
        self.attention_key_size = attention_key_size or self.attention_head_size
        self.intermediate_size = intermediate_size
        self.dropout_rate = dropout_rate or 0
        self.attention_dropout_rate = attention_dropout_rate or 0
        self.hidden_act = hidden_act
        self.embedding_size = embedding_size or hidden_size
        self.sequence_length = sequence_length
        self.keep_tokens = keep_tokens
        self.compound_tokens = compound_tokens
        self.residual_attention_scores = residual_attention_scores
        self.talking_heads = talking_heads
        self.ignore_invalid_weights = ignore_invalid_weights
        self.autoresize_weights = autoresize_weights
        self.allow_nonfinite_weights = allow_nonfinite_weights
        self.layer_norm_eps = layer_norm_eps
        self.recompute = recompute_enabled() if recompute is None else recompute
        self.graph_inputs = []
        self.attention_bias = None
        self.position_bias = None
        self.attention_scores = None
        self.layers = {} if layers is None else layers
        self.prefix = prefix or ""
        self.name = name
        self.built = False
        self.deferred_initializers = {}
        """(layer name, weight shape) -> initializer whose draw was deferred (see
        ``bert4keras.layers.initializers``); emptied once a checkpoint is loaded."""

    # ------------------------------------------------------------------ building

    def build(self, attention_caches=None, layer_norm_cond=None,
              layer_norm_cond_hidden_size=None, layer_norm_cond_hidden_act=None,
              additional_input_layers=None, **kwargs):
        """Create the inputs, run the hooks, and wrap everything in ``self.model``.

        ``layer_norm_cond*`` make every LayerNormalization conditional on a
        fixed-size vector (conditional LayerNorm). ``attention_caches`` is
        accepted for 0.11.5 signatures only and must be empty.
        """
        if attention_caches:
            raise ValueError(
                "build(attention_caches=...) is not supported: cached decoding is done by "
                "model.generate / AutoRegressiveDecoder, which reuse this model's layers")
        if self.built:
            return
        inputs = self.get_inputs()
        self.set_inputs(inputs, additional_input_layers)
        self.layer_norm_conds = [
            layer_norm_cond, layer_norm_cond_hidden_size, layer_norm_cond_hidden_act or "linear",
        ]
        outputs = self.call(inputs)
        self.set_outputs(outputs)
        self.model = TransformerModel(self.inputs, self.output, name=self.name)
        self.model.transformer = self  # for model.generate()
        self.built = True

    def call(self, inputs):
        """One forward graph over ``inputs`` (the model's raw input tensors).

        Per-graph state (masks, position biases, RealFormer scores) starts empty,
        so calling again over new inputs builds a second graph on the same layers.
        """
        self.graph_inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        self.attention_bias = None
        self.position_bias = None
        self.attention_scores = None
        outputs = self.apply_embeddings(inputs)
        for i in range(self.num_hidden_layers):
            outputs = self.apply_main_layers(outputs, i)
        return self.apply_final_layers(outputs)

    def prefixed(self, name: str | None) -> str | None:
        return None if name is None else self.prefix + name

    def apply(self, inputs=None, layer=None, arguments: dict | None = None, **kwargs):
        """Call the layer named ``kwargs['name']``, creating it as ``layer(**kwargs)`` on first use.

        ``arguments`` go to the layer's ``call``. A name seen before re-uses the
        existing layer (and its weights).
        """
        if layer is Dropout and self.dropout_rate == 0:
            return inputs
        if layer is MultiHeadAttention and self.residual_attention_scores:
            kwargs["return_attention_scores"] = True
        if layer is MultiHeadAttention and self.talking_heads:
            layer = TalkingHeadsAttention
        arguments = dict(arguments or {})
        name = self.prefixed(kwargs.get("name"))
        kwargs["name"] = name
        if name not in self.layers:
            created = layer(**kwargs)
            if self.recompute and isinstance(created, RECOMPUTED_LAYERS):
                recompute_layer(created)
            name = created.name
            self.layers[name] = created
        if inputs is None:
            return self.layers[name]
        target = self.layers[name]
        if deferral_active() and not target.built:
            with initializing_layer(name):
                return self._call_layer(target, name, inputs, arguments)
        return self._call_layer(target, name, inputs, arguments)

    def _call_layer(self, target, name, inputs, arguments):
        if self.decoding is not None:
            return self.decoding.call_layer(target, inputs, arguments)
        if isinstance(target, MultiHeadAttention) and self.residual_attention_scores:
            return self._apply_residual_attention(target, name, inputs, arguments)
        return target(inputs, **arguments)

    def _apply_residual_attention(self, target, name, inputs, arguments):
        """RealFormer: each attention adds the previous layer's pre-softmax scores as a bias."""
        inputs = list(inputs)
        if self.attention_scores is not None:
            if arguments.get("a_bias"):
                merged = self.attention_scores  # a bool LM/UniLM mask is in them as -inf already
                if not is_bool(inputs[3]):
                    merged = self.apply(inputs=[inputs[3], merged], layer=Add,
                                        name=name + "-Attention-Bias")
                inputs = inputs[:3] + [merged] + inputs[4:]
            else:
                inputs = inputs[:3] + [self.attention_scores] + inputs[3:]
            arguments["a_bias"] = True
        o, a = target(inputs, **arguments)
        self.attention_scores = a
        return o

    # ------------------------------------------------------------------ cached decoding

    decoding = None
    """A :class:`DecodingContext` while :meth:`build_cache_model` runs the hooks, else None."""

    def build_cache_model(self, max_length: int) -> keras.Model:
        """A functional step model for cached decoding, built by the same hooks and layers.

        Inputs: step token ids (b, s), [step segment ids (b, s)], [the whole cache's
        segment ids (b, max_length), UniLM only], the cache write index (a scalar),
        positions of the step's first token (b,), the key padding mask
        (b, max_length), then one (k, v) pair of caches (b, max_length, heads, size)
        per self-attention call, then (encoder-decoder) one static (k, v) pair per
        cross-attention, computed once by ``model.cross_model`` from the encoder output.
        Outputs: the logits (b, s, vocab) (the input of a final softmax, if any) and the
        updated self-attention caches, in the same order.
        """
        decoder = getattr(self, "_decoder", None)  # an encoder-decoder caches its decoder
        if decoder is not None:
            return decoder.build_cache_model(max_length)
        if self.residual_attention_scores:
            raise ValueError(f"{type(self).__name__}: cached decoding does not support "
                             "residual_attention_scores (RealFormer)")
        if any(isinstance(layer, GatedAttentionUnit) for layer in self.layers.values()):
            raise ValueError(f"{type(self).__name__}: cached decoding does not support "
                             "GatedAttentionUnit layers")
        if not isinstance(self, (LM_Mask, UniLM_Mask)):
            raise ValueError(f"{type(self).__name__} is not a decoder: build it with "
                             "application='lm' or 'unilm' (or use a GPT/T5 decoder)")
        if self.layer_norm_conds[0] is not None:
            raise ValueError(f"{type(self).__name__}: cached decoding does not support "
                             "layer_norm_cond (conditional LayerNorm)")
        inputs = [keras.Input((None,) + tuple(t.shape[2:]), dtype=t.dtype, name=t.name)
                  for t in self.inputs]
        kinds = ["context" if len(t.shape) == 3 else "segments" if "Segment" in t.name
                 else "tokens" for t in self.inputs]
        decoding = DecodingContext(max_length, unilm=isinstance(self, UniLM_Mask),
                                   context=inputs[kinds.index("context")] if "context" in kinds else None)
        self.decoding = decoding
        try:  # call() starts a fresh graph: the hooks read these inputs, not self.inputs
            outputs = self.call(inputs if len(inputs) > 1 else inputs[0])
        finally:
            self.decoding = None
        logits = outputs[-1] if isinstance(outputs, list) else outputs
        producer = logits._keras_history.operation
        if isinstance(producer, keras.layers.Activation) \
                and getattr(producer.activation, "__name__", "") == "softmax":
            logits = producer._inbound_nodes[-1].input_tensors[0]
        caches = [c for pair in decoding.caches for c in pair]
        updated = [c for pair in decoding.updated for c in pair]
        cross_caches = [c for pair in decoding.cross_caches for c in pair]
        step_inputs = inputs + decoding.inputs() + caches + cross_caches
        model = keras.Model(step_inputs, [logits] + updated, name=f"{self.name or 'model'}_step")
        model.cache_shapes = [tuple(c.shape[1:]) for c in caches]
        model.cross_model = decoding.cross_model()
        model.input_kinds = kinds + decoding.input_kinds()
        model.unilm = decoding.unilm
        return model

    # ------------------------------------------------------------------ block kit

    def dropout(self, x, name: str):
        """Dropout at the model's ``dropout_rate`` (no layer at all at rate 0)."""
        return self.apply(inputs=x, layer=Dropout, rate=self.dropout_rate, name=name)

    def dropout_add(self, x, y, name: str):
        """The residual ``x + Dropout(y)`` of sub-layer ``name`` (``name-Dropout``, ``name-Add``)."""
        y = self.dropout(y, f"{name}-Dropout")
        return self.apply(inputs=[x, y], layer=Add, name=f"{name}-Add")

    def apply_norm(self, x, name: str, **overrides):
        """LayerNormalization, conditional when the model was built with ``layer_norm_cond``;
        ``overrides`` change the norm (T5, RoFormerV2: RMS-style)."""
        z, hidden_units, hidden_act = self.layer_norm_conds
        options = dict(epsilon=self.layer_norm_eps, conditional=z is not None,
                       hidden_units=hidden_units, hidden_activation=hidden_act,
                       hidden_initializer=self.initializer)
        return self.apply(inputs=self.simplify([x, z]), layer=LayerNormalization, name=name,
                          **{**options, **overrides})

    def apply_attention(self, inputs: list, name: str, arguments: dict | None = None, **overrides):
        """Multi-head attention over ``[q, k, v, ...]`` sized from the model's config;
        ``overrides`` change the layer (``use_bias=False``, ``attention_scale=False``)."""
        options = dict(heads=self.num_attention_heads, head_size=self.attention_head_size,
                       out_dim=self.hidden_size, key_size=self.attention_key_size,
                       attention_dropout=self.attention_dropout_rate,
                       kernel_initializer=self.initializer)
        return self.apply(inputs=inputs, layer=MultiHeadAttention, arguments=arguments, name=name,
                          **{**options, **overrides})

    def apply_feed_forward(self, x, name: str, **overrides):
        """The block's feed-forward (gated when ``hidden_act`` is a list)."""
        options = dict(units=self.intermediate_size, activation=self.hidden_act,
                       kernel_initializer=self.initializer)
        return self.apply(inputs=x, layer=FeedForward, name=name, **{**options, **overrides})

    position_bias_type: str | None = None
    """``p_bias`` of every self-attention (``'typical_relative'``, ``'rotary'``), fed by
    :meth:`compute_position_bias`; None: the attention gets no position input."""

    def attention_inputs(self, x) -> tuple[list, dict]:
        """``[q, k, v, (attention bias), (position bias)]`` of a self-attention over ``x``,
        and its call arguments."""
        inputs, arguments = [x, x, x], {"a_bias": None}
        attention_mask = self.compute_attention_bias()
        if attention_mask is not None:
            arguments["a_bias"] = True
            inputs.append(attention_mask)
        if self.position_bias_type is not None:
            inputs.append(self.compute_position_bias(x))
            arguments["p_bias"] = self.position_bias_type
        return inputs, arguments

    def apply_token_embedding(self, token_ids):
        """The ``Embedding-Token`` table (also the tied output layer of LM heads)."""
        return self.apply(inputs=token_ids, layer=Embedding, input_dim=self.vocab_size,
                          output_dim=self.embedding_size, embeddings_initializer=self.initializer,
                          mask_zero=True, name="Embedding-Token")

    def apply_tied_output(self, x):
        """Logits ``x @ Embedding-Token^T``: the token table reused as the output layer."""
        return self.apply(inputs=x, layer=Embedding, arguments={"mode": "dense"},
                          name="Embedding-Token")

    def apply_segment_embedding(self, x, segment_ids, vocab_size: int, shared: bool = False):
        """``x`` plus the ``Embedding-Segment`` embeddings of ``segment_ids``; ``shared``
        looks segments up in the token table instead (HF GPT's ``token_type_ids``)."""
        name = "Embedding-Token" if shared else "Embedding-Segment"
        s = self.apply(inputs=segment_ids, layer=Embedding, input_dim=vocab_size,
                       output_dim=self.embedding_size, embeddings_initializer=self.initializer,
                       name=name)
        return self.apply(inputs=[x, s], layer=Add, name="Embedding-Token-Segment")

    def apply_embedding_mapping(self, x, name: str = "Embedding-Mapping", always: bool = False,
                                **overrides):
        """Project factorised embeddings (``embedding_size``) to ``hidden_size``; a no-op
        when the sizes agree, unless ``always`` (ALBERT checkpoints always carry it)."""
        if self.embedding_size == self.hidden_size and not always:
            return x
        return self.apply(inputs=x, layer=Dense, units=self.hidden_size,
                          kernel_initializer=self.initializer, name=name, **overrides)

    def reject_options(self, **options) -> None:
        """Raise for build options this model does not support, when given a true value."""
        given = [k for k, v in options.items() if v]
        if given:
            raise ValueError(f"{type(self).__name__} does not support the option(s) "
                             f"{', '.join(given)}")

    @classmethod
    def normalize_config(cls, configs: dict, model_name: str | None = None) -> dict:
        """Translate a model's own config keys (e.g. an HF ``config.json``) into
        constructor arguments; ``model_name`` is the registry name used."""
        return configs

    def get_inputs(self):
        raise NotImplementedError

    def apply_embeddings(self, inputs):
        raise NotImplementedError

    def apply_main_layers(self, inputs, index: int):
        raise NotImplementedError

    def apply_final_layers(self, inputs):
        raise NotImplementedError

    def compute_attention_bias(self, inputs=None):
        """The attention bias/mask every layer of the current graph uses (LM and UniLM
        masks override this and read the graph's raw inputs from ``self.graph_inputs``;
        ``inputs`` is kept for 0.11.5 overrides)."""
        return self.attention_bias

    def compute_position_bias(self, inputs=None):
        """Relative-position inputs shared by every layer of the current graph (NEZHA,
        T5, RoFormer); ``inputs`` is the hidden state they are computed against."""
        return self.position_bias

    def set_inputs(self, inputs, additional_input_layers=None):
        inputs = [] if inputs is None else (list(inputs) if isinstance(inputs, list) else [inputs])
        if additional_input_layers is not None:
            if not isinstance(additional_input_layers, list):
                additional_input_layers = [additional_input_layers]
            inputs.extend(additional_input_layers)
        self.inputs = inputs
        self.input = inputs if len(inputs) > 1 else inputs[0]

    def set_outputs(self, outputs):
        outputs = list(outputs) if isinstance(outputs, list) else [outputs]
        self.outputs = outputs
        self.output = outputs if len(outputs) > 1 else outputs[0]

    def input_layer(self, name: str, dtype: str = "int32"):
        """An ``Input`` of shape (sequence_length,) registered under ``name``."""
        return self.apply(layer=Input, shape=(self.sequence_length,), dtype=dtype, name=name)

    @property
    def initializer(self):
        """Truncated normal (stddev 0.02), as in BERT."""
        return TruncatedNormal(stddev=0.02)

    @staticmethod
    def simplify(inputs):
        """Drop the Nones from a list; a single survivor is returned bare."""
        inputs = [i for i in inputs if i is not None]
        return inputs[0] if len(inputs) == 1 else inputs

    # ------------------------------------------------------------------ checkpoints

    def variable_mapping(self) -> dict[str, list[str]]:
        """Layer name -> checkpoint variable names, in the order of ``layer.weights``."""
        return {}

    def hf_variable_name(self, name: str) -> tuple[str, bool]:
        """Google name -> (name in an HF checkpoint, whether to transpose). Models override."""
        raise KeyError(f"{type(self).__name__} has no HF naming for {name!r}")

    hf_base_prefixes: tuple[str, ...] = ()
    hf_tied_names: dict[str, str] = {}
    """HF names of tied copies (e.g. the MLM decoder) -> the Google name they repeat."""

    def checkpoint_view(self, checkpoint) -> GoogleNameView:
        """Open ``checkpoint`` (path or reader) as a view under Google variable names; NaN/inf
        in a weight is an error unless the model was built with ``allow_nonfinite_weights``."""
        reader = open_checkpoint(checkpoint)
        if reader.format == "tf":
            return GoogleNameView(reader, allow_nonfinite=self.allow_nonfinite_weights)
        return GoogleNameView(reader, self.hf_variable_name, self.hf_base_prefixes,
                              self.hf_tied_names, allow_nonfinite=self.allow_nonfinite_weights)

    def load_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Apply ``keep_tokens`` (select rows) and ``compound_tokens`` (append averaged rows)."""
        embeddings = np.asarray(embeddings, dtype="float32")
        if self.keep_tokens is not None:
            keep = np.asarray(self.keep_tokens)
            if keep.size and (keep.min() < 0 or keep.max() >= embeddings.shape[0]):
                raise ValueError(
                    f"keep_tokens holds ids outside [0, {embeddings.shape[0]}) of the checkpoint vocabulary")
            embeddings = embeddings[keep]
        if self.compound_tokens is not None:
            extra = []
            for item in self.compound_tokens:
                ids, weights = (item, [1] * len(item)) if isinstance(item, list) else item
                extra.append(np.average(embeddings[ids], axis=0, weights=weights))
            if extra:
                embeddings = np.concatenate([embeddings, np.stack(extra).astype("float32")], 0)
        return embeddings

    def load_variable(self, checkpoint: GoogleNameView, name: str) -> np.ndarray:
        """Read one variable; models transform specific ones (embeddings, transposes)."""
        return checkpoint.get(name)

    def load_weights_from_checkpoint(self, checkpoint, mapping: dict | None = None) -> None:
        """Load weights from a TF checkpoint, an HF directory, safetensors or .bin file.

        Raises on a model weight missing from the checkpoint (unless
        ``ignore_invalid_weights``), on a shape mismatch (unless
        ``autoresize_weights``), on a non-float weight and on NaN/inf (unless
        ``allow_nonfinite_weights``); warns about checkpoint weights left unused.
        """
        loaded = set()
        try:
            loaded = self._load_weights(checkpoint, mapping)
        finally:  # no placeholder survives, whatever happened
            self._initialize_deferred(loaded)

    def _load_weights(self, checkpoint, mapping):
        """Assign the checkpoint's values; returns the ids of the weights assigned."""
        view = checkpoint if isinstance(checkpoint, GoogleNameView) else self.checkpoint_view(checkpoint)
        mapping = mapping or self.variable_mapping()
        mapping = {self.prefixed(k): v for k, v in mapping.items()}
        mapping = {k: v for k, v in mapping.items() if k in self.layers}
        pairs = []
        for layer_name, names in mapping.items():
            layer = self.layers[layer_name]
            weights = layer.trainable_weights
            if len(names) > len(weights):
                raise CheckpointError(
                    f"layer {layer_name!r} has {len(weights)} weights but the mapping lists "
                    f"{len(names)}: {names}")
            for i, (weight, name) in enumerate(zip(weights, names)):
                if name not in view:
                    message = f"{view.path}: variable {view.describe(name)} for layer {layer_name!r} not found"
                    if self.ignore_invalid_weights:
                        warnings.warn(message + ", but ignored (ignore_invalid_weights=True)", stacklevel=3)
                        continue
                    raise CheckpointError(message + " (pass ignore_invalid_weights=True to skip it)")
                value = self.load_variable(view, name)
                value = self._fit_shape(layer, i, weight, value, name, view.path)
                pairs.append((weight, value))
        for weight, value in pairs:
            weight.assign(value.astype(keras.backend.standardize_dtype(weight.dtype), copy=False))
        unused = view.unused()
        if unused:
            shown = ", ".join(unused[:8]) + (", ..." if len(unused) > 8 else "")
            warnings.warn(f"{view.path}: {len(unused)} checkpoint weights were not used: {shown}",
                          stacklevel=3)
        return {id(weight) for weight, _ in pairs}

    def _initialize_deferred(self, loaded: set) -> None:
        """Draw the real initial values of deferred weights the checkpoint did not fill."""
        records, self.deferred_initializers = self.deferred_initializers, {}
        if not records:
            return
        for name, layer in self.layers.items():
            for weight in getattr(layer, "weights", ()):  # the registry also holds Input tensors
                initializer = records.get((name, tuple(weight.shape)))
                if initializer is None or id(weight) in loaded:
                    continue
                if np.isnan(keras.ops.convert_to_numpy(weight)).all():  # still the placeholder
                    weight.assign(initializer.sample(tuple(weight.shape), dtype=weight.dtype))

    def export_variable(self, name: str, value: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`load_variable`'s transforms, for writing checkpoints."""
        return value

    def create_variable(self, name: str, value: np.ndarray, dtype: str | None = None):
        """0.11.5's export hook: ``(variable, value)`` with ``value`` in checkpoint layout (:meth:`export_variable`).

        Keras variable names cannot contain ``/``, so the variable is named after the last part of ``name``.
        """
        value = self.export_variable(name, value)
        return keras.Variable(value, dtype=dtype or keras.config.floatx(), name=name.split("/")[-1]), value

    def save_weights_as_checkpoint(self, filename: str, mapping: dict | None = None,
                                   dtype: str | None = None) -> None:
        """Write the weights as a Google-style TF checkpoint (``filename`` is the prefix).

        TensorFlow is not needed; ``dtype`` (e.g. ``'float16'``) casts float weights.
        """
        from bert4keras.checkpoints.tf_checkpoint import write_tf_checkpoint

        mapping = mapping or self.variable_mapping()
        mapping = {self.prefixed(k): v for k, v in mapping.items()}
        tensors = {}
        for layer_name, names in mapping.items():
            if layer_name not in self.layers:
                continue
            values = [keras.ops.convert_to_numpy(w) for w in self.layers[layer_name].trainable_weights]
            for name, value in zip(names, values):
                value = self.export_variable(name, value)
                if dtype is not None and np.issubdtype(value.dtype, np.floating):
                    value = value.astype(dtype)
                tensors[name] = value
        write_tf_checkpoint(filename, tensors)

    def _fit_shape(self, layer, index, weight, value, name, path):
        w_shape, v_shape = tuple(weight.shape), tuple(value.shape)
        if w_shape == v_shape:
            return value
        if not self.autoresize_weights:
            raise CheckpointError(
                f"{path}: variable {name!r} has shape {v_shape} but layer "
                f"{layer.name!r} weight {weight.path!r} expects {w_shape} "
                "(check the config, or pass autoresize_weights=True)")
        value = orthogonally_resize(value, w_shape)
        if isinstance(layer, MultiHeadAttention):
            qk_count = 4 if layer.use_bias else 2
            if layer.attention_scale and index < qk_count:
                value = value * (w_shape[-1] / v_shape[-1]) ** 0.25
        elif isinstance(layer, FeedForward):
            inner = (2 if layer.use_bias else 1) * len(layer.activation)
            if index < inner:
                value = value * np.sqrt(w_shape[-1] / v_shape[-1])
            else:
                value = value * np.sqrt(v_shape[0] / w_shape[0])
        return value


class DecodingContext:
    """What the hooks' layers need while a cached step graph is built: the cache write
    index, the positions of the step's tokens, the key padding mask and one (k, v)
    cache per attention call (ALBERT's shared layer gets one per block)."""

    def __init__(self, max_length: int, unilm: bool = False, context=None):
        self.max_length = max_length
        self.unilm = unilm
        self.context = context
        self.context_mask = (keras.Input((1, None), dtype="bool", name="Context-Mask")
                             if context is not None else None)
        self.index = keras.Input(batch_shape=(), dtype="int32", name="Cache-Index")
        self.positions = keras.Input(batch_shape=(None,), dtype="int32", name="Step-Position")
        self.key_mask = keras.Input((max_length,), dtype="bool", name="Key-Mask")
        self.segment_ids = (keras.Input((max_length,), dtype="int32", name="Cache-Segment")
                            if unilm else None)
        self.caches, self.updated = [], []
        self.cross_layers, self.cross_caches = [], []

    def cross_model(self) -> keras.Model | None:
        """Encoder output -> the keys and values of every cross-attention, in the order of
        ``cross_caches``: what the step model reads instead of projecting at each step."""
        if not self.cross_layers:
            return None
        context = keras.Input(tuple(self.context.shape[1:]), dtype=self.context.dtype,
                              name="Cross-Context")
        from bert4keras.layers.attention import AttentionKeysValues

        outputs = [AttentionKeysValues(layer, name=f"{layer.name}-Keys-Values")(context)
                   for layer in self.cross_layers]
        return keras.Model(context, [t for pair in outputs for t in pair],
                           name="cross_attention_cache")

    def inputs(self) -> list:
        extra = [self.segment_ids] if self.unilm else []
        extra += [self.context_mask] if self.context is not None else []
        return extra + [self.index, self.positions, self.key_mask]

    def input_kinds(self) -> list[str]:
        extra = ["cache_segments"] if self.unilm else []
        extra += ["context_mask"] if self.context is not None else []
        return extra + ["index", "positions", "key_mask"]

    def call_layer(self, target, inputs, arguments: dict):
        """Call ``target`` with the step arguments its kind needs; attention gets a cache."""
        from bert4keras.layers.attention import AttentionStep
        from bert4keras.layers import (
            CausalMask, PositionEmbedding, RelativePositionEmbedding, RelativePositionEmbeddingT5,
            SinusoidalPositionEmbedding, UniLMMask,
        )

        arguments = dict(arguments)
        if isinstance(target, UniLMMask):
            arguments.update(q_offset=self.index, k_segment_ids=self.segment_ids,
                             key_mask=self.key_mask)
        elif isinstance(target, CausalMask):
            arguments.update(q_offset=self.index, k_len=self.max_length, key_mask=self.key_mask)
        elif isinstance(target, (PositionEmbedding, SinusoidalPositionEmbedding)) \
                and not target.custom_position_ids:
            arguments.update(q_offset=self.positions)
        elif isinstance(target, (RelativePositionEmbedding, RelativePositionEmbeddingT5)):
            cross = inputs[1] is self.context  # keys: the encoder output, not the cache
            arguments.update(q_offset=self.index, k_len=None if cross else self.max_length)
        elif isinstance(target, MultiHeadAttention) and inputs[1] is self.context:
            # cross-attention over the encoder output, masked by its padding; its keys and
            # values are a static cache, projected once per prompt batch (cross_model)
            cache = [keras.Input((None, target.heads, size), dtype=target.compute_dtype,
                                 name=f"Cross-Cache-{len(self.cross_layers)}-{kind}")
                     for kind, size in (("k", target.key_size), ("v", target.head_size))]
            self.cross_layers.append(target)
            self.cross_caches.append(cache)
            inputs = list(inputs[:3]) + [self.context_mask] + list(inputs[3:])
            arguments["a_bias"] = True
            step = AttentionStep(target, name=f"{target.name}-Cross-Step")
            outputs, _ = step(inputs, cache=cache, cache_index=None, **arguments)
            return outputs
        elif isinstance(target, MultiHeadAttention):
            cache = [keras.Input((self.max_length, target.heads, size), dtype=target.compute_dtype,
                                 name=f"Cache-{len(self.caches)}-{kind}")
                     for kind, size in (("k", target.key_size), ("v", target.head_size))]
            self.caches.append(cache)
            step = AttentionStep(target, name=f"{target.name}-Step-{len(self.caches) - 1}")
            outputs, cache = step(inputs, cache=cache, cache_index=self.index, **arguments)
            self.updated.append(cache)
            return outputs
        return target(inputs, **arguments)


class LM_Mask:
    """Mixin: causal (lower-triangular) attention, for language models."""

    def compute_attention_bias(self, inputs=None):
        if self.attention_bias is None:
            from bert4keras.layers.core import CausalMask

            self.attention_bias = self.apply(inputs=self.graph_inputs[0], layer=CausalMask,
                                             name="Attention-LM-Mask")
        return self.attention_bias


class UniLM_Mask:
    """Mixin: UniLM seq2seq attention decided by segment ids — bidirectional inside
    segment 0, causal over segment 1 (which also sees all of segment 0)."""

    def compute_attention_bias(self, inputs=None):
        if self.attention_bias is None:
            from bert4keras.layers.core import UniLMMask

            if len(self.graph_inputs) < 2:
                raise ValueError(f"{type(self).__name__}: the UniLM mask needs segment ids as the "
                                 "second input, and this model has only token ids")
            self.attention_bias = self.apply(inputs=self.graph_inputs[1], layer=UniLMMask,
                                             name="Attention-UniLM-Mask")
        return self.attention_bias


def extend_with_language_model(BaseModel):
    """Add a causal attention mask to ``BaseModel`` (and its MLM head as the LM head)."""
    return _with_mask(BaseModel, LM_Mask, "LanguageModel")


def extend_with_unified_language_model(BaseModel):
    """Add the UniLM seq2seq attention mask to ``BaseModel``."""
    return _with_mask(BaseModel, UniLM_Mask, "UnifiedLanguageModel")


def _with_mask(BaseModel, mask: type, prefix: str):
    """``BaseModel`` under the ``mask`` mixin (once: GPT already is causal), MLM head on."""
    bases = (BaseModel,) if issubclass(BaseModel, mask) else (mask, BaseModel)

    class Masked(*bases):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if not getattr(self, "with_mlm", False):  # keep a given activation, e.g. 'linear'
                self.with_mlm = True

    Masked.__name__ = Masked.__qualname__ = f"{prefix}_{BaseModel.__name__}"
    return Masked
