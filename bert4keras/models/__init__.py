"""Models and ``build_transformer_model`` (the public ``bert4keras.models`` namespace)."""

from __future__ import annotations

import json
import numbers
import os
import types
import typing

import keras
import numpy as np

from bert4keras.layers.initializers import deferred_initialization
from bert4keras.models.base import (  # noqa: F401
    LM_Mask, Transformer, UniLM_Mask, extend_with_language_model,
    extend_with_unified_language_model,
)
from bert4keras.models.albert import ALBERT, ALBERT_Unshared  # noqa: F401
from bert4keras.models.bert import BERT  # noqa: F401
from bert4keras.models.data_parallel import data_parallel  # noqa: F401
from bert4keras.models.electra import ELECTRA  # noqa: F401
from bert4keras.models.gau import GAU_alpha  # noqa: F401
from bert4keras.models.gpt import GPT, GPT2, GPT2_ML  # noqa: F401
from bert4keras.models.nezha import NEZHA  # noqa: F401
from bert4keras.models.roformer import RoFormer, RoFormerV2  # noqa: F401
from bert4keras.models.t5 import T5, T5_Base, T5_Decoder, T5_Encoder  # noqa: F401

Model = keras.Model

MODELS: dict[str, type] = {
    "bert": BERT,
    "roberta": BERT,
    "albert": ALBERT,
    "albert_unshared": ALBERT_Unshared,
    "nezha": NEZHA,
    "roformer": RoFormer,
    "roformer_v2": RoFormerV2,
    "electra": ELECTRA,
    "gau_alpha": GAU_alpha,
    "gpt": GPT,
    "gpt2": GPT2,
    "gpt2_ml": GPT2_ML,
    **{f"{version}{part}": cls for version in ("t5", "t5.1.0", "t5.1.1", "mt5.1.1")
       for part, cls in (("", T5), ("_encoder", T5_Encoder), ("_decoder", T5_Decoder))},
}
"""Model name -> class, for ``build_transformer_model(model=...)``."""

# Applications that cannot be used with a model (as in bert4keras; also every T5 class).
_NO_LM_APPLICATIONS = {"electra", "t5"}

_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
             "intermediate_size")


def load_config(config_path: str) -> dict:
    """Read a Google ``bert_config.json`` or an HF ``config.json`` (a directory works too)."""
    if os.path.isdir(config_path):
        config_path = os.path.join(config_path, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"config file not found: {config_path}")
    try:
        with open(config_path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_path}: not valid JSON ({e})") from e


# Google / HF config keys that are renamed to a constructor argument, with the type it needs.
_ALIAS_TYPES = {
    "max_position_embeddings": int, "type_vocab_size": int, "hidden_dropout_prob": float,
    "attention_probs_dropout_prob": float, "layer_norm_epsilon": float, "n_embd": int,
    "n_layer": int, "n_head": int, "n_positions": int, "n_inner": int, "resid_pdrop": float,
    "attn_pdrop": float, "d_model": int, "num_layers": int, "num_heads": int, "d_kv": int,
    "d_ff": int, "feed_forward_proj": str,
}


def _expected_types(model_class: type) -> dict[str, tuple[type, bool]]:
    """Constructor argument -> (int, float, bool or str, whether None is allowed), read from the
    type hints of every ``__init__`` in the class's MRO; arguments of other types are skipped."""
    expected = {}
    for cls in reversed(model_class.__mro__):
        init = cls.__dict__.get("__init__")
        try:
            hints = typing.get_type_hints(init) if init is not None else {}
        except (NameError, TypeError):
            continue
        for name, hint in hints.items():
            options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
            kinds = [t for t in options if t in (int, float, bool, str)]
            if len(kinds) == 1:
                expected[name] = (kinds[0], type(None) in options)
    return expected


def _fits(value, kind: type) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, never to a config
        return kind is bool
    if kind is int:
        return isinstance(value, numbers.Integral)
    if kind is float:
        return isinstance(value, numbers.Real)
    return isinstance(value, kind)


def _check_config_types(configs: dict, expected: dict, source: str) -> None:
    """Raise ``TypeError`` naming the first config field whose value has the wrong type (e.g.
    ``"hidden_size": "768"``), instead of a puzzling error deep inside the build."""
    for name, value in configs.items():
        if name not in expected:
            continue
        kind, optional = expected[name]
        if (value is None and optional) or (value is not None and _fits(value, kind)):
            continue
        wanted = kind.__name__ + (" or null" if optional else "")
        raise TypeError(f"config {source}: field {name!r} is {value!r} ({type(value).__name__}); "
                        f"expected {wanted}")


def _normalize_config(configs: dict) -> dict:
    """Map Google/HF config keys onto the constructor arguments of the models."""
    configs.setdefault("max_position", configs.get("max_position_embeddings", 512))
    configs.setdefault("dropout_rate", configs.get("hidden_dropout_prob"))
    configs.setdefault("attention_dropout_rate", configs.get("attention_probs_dropout_prob"))
    configs.setdefault("segment_vocab_size", configs.get("type_vocab_size", 2))
    if "layer_norm_eps" in configs and configs["layer_norm_eps"] is None:
        del configs["layer_norm_eps"]
    act = configs.get("hidden_act")
    if act in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        configs["hidden_act"] = "gelu_tanh"
    return configs


def build_transformer_model(
    config_path: str | None = None,
    checkpoint_path: str | None = None,
    model="bert",
    application: str = "encoder",
    return_keras_model: bool = True,
    **kwargs,
):
    """Build a model from a config (and optionally load a checkpoint), as in bert4keras.

    ``model`` is a name from ``MODELS`` or a :class:`Transformer` subclass;
    ``application`` is ``'encoder'``, ``'lm'`` (causal mask) or ``'unilm'``
    (seq2seq mask). Extra keyword arguments override the config and go to the
    model (``with_pool``, ``with_mlm``, ``keep_tokens``, ...). Returns the Keras
    model, or the :class:`Transformer` with ``return_keras_model=False``.
    """
    configs = load_config(config_path) if config_path is not None else {}
    configs.update(kwargs)

    if isinstance(model, str):
        model_name = model.lower()
        if model_name not in MODELS:
            raise ValueError(f"unknown model {model!r}; known models: {', '.join(sorted(MODELS))}")
        model_class = MODELS[model_name]
    elif isinstance(model, type) and issubclass(model, Transformer):
        model_name, model_class = model.__name__.lower(), model
    else:
        raise TypeError(f"model must be a model name or a Transformer subclass, got {model!r}")
    source = config_path or "(keyword arguments)"
    expected = _expected_types(model_class)
    _check_config_types(configs, {**expected, **{k: (t, True) for k, t in _ALIAS_TYPES.items()}}, source)
    configs = _normalize_config(model_class.normalize_config(configs, model_name))
    _check_config_types(configs, expected, source)
    configs = {k: v.item() if isinstance(v, np.generic) else v for k, v in configs.items()}

    missing = [k for k in _REQUIRED if configs.get(k) is None]
    if missing:
        raise ValueError(
            f"config {source} is missing required field(s): "
            f"{', '.join(missing)}")

    application = application.lower()
    if application in ("lm", "unilm") and (model_name in _NO_LM_APPLICATIONS
                                           or issubclass(model_class, T5_Base)):
        raise ValueError(f'"{model_name}" model can not be used as "{application}" application.')
    if application == "lm":
        model_class = extend_with_language_model(model_class)
    elif application == "unilm":
        model_class = extend_with_unified_language_model(model_class)
    elif application != "encoder":
        raise ValueError(f"unknown application {application!r}; use 'encoder', 'lm' or 'unilm'")

    transformer = model_class(**configs)
    if checkpoint_path is None:
        transformer.build(**configs)
    else:  # skip the random draws the checkpoint overwrites (bert4keras.layers.initializers)
        with deferred_initialization(transformer.deferred_initializers):
            transformer.build(**configs)
        transformer.load_weights_from_checkpoint(checkpoint_path)
    return transformer.model if return_keras_model else transformer
