"""``python -m bert4keras convert``: a Google TF checkpoint directory <-> an HF safetensors directory.

Only tensor names and layouts change (HF stores dense kernels transposed), through the model
class's own ``variable_mapping()`` and ``hf_variable_name()``, so a round trip is bit-exact
unless ``--dtype`` casts. A Google directory holds ``bert_config.json``, ``bert_model.ckpt.*``
and ``vocab.txt``; an HF directory ``config.json``, ``model.safetensors`` and ``vocab.txt``.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

import numpy as np

DTYPES = ("float32", "float16")


def _model_type(config: dict, model_type: str | None) -> str:
    from bert4keras.models import MODELS

    name = model_type or config.get("model_type", "bert")
    if name not in MODELS:
        raise ValueError(f"model type {name!r} is not one of {', '.join(sorted(MODELS))} (pass --model)")
    return name


def _transformer(config_path: str, model_type: str):
    """The model object (random weights): it knows the checkpoint names of its weights."""
    from bert4keras.models import build_transformer_model

    return build_transformer_model(config_path, None, model=model_type, return_keras_model=False)


def _checkpoint_names(transformer) -> list[str]:
    return [name for names in transformer.variable_mapping().values() for name in names]


def _cast(value: np.ndarray, dtype: str | None) -> np.ndarray:
    if dtype is not None and np.issubdtype(value.dtype, np.floating):
        return value.astype(dtype)
    return value


def _read_config(directory: str, names: tuple[str, ...]) -> tuple[str, dict]:
    for name in names:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return path, json.load(f)
    raise FileNotFoundError(f"{directory}: no {' or '.join(names)}")


def _copy_vocab(source: str, target: str) -> None:
    for name in ("vocab.txt", "tokenizer_config.json", "spiece.model", "sentencepiece.model"):
        if os.path.exists(os.path.join(source, name)):
            shutil.copyfile(os.path.join(source, name), os.path.join(target, name))


def _write_json(path: str, data: dict) -> None:
    from bert4keras.cli import atomic_write_text

    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def google_to_hf(source: str, target: str, model_type: str | None = None, dtype: str | None = None,
                 progress: bool = True) -> dict:
    """Convert a Google checkpoint directory to an HF one; returns {"written", "skipped"} names."""
    import keras
    from safetensors.numpy import save_file

    from bert4keras.checkpoints import open_checkpoint

    config_path, config = _read_config(source, ("bert_config.json", "config.json"))
    model_type = _model_type(config, model_type)
    index = sorted(glob.glob(os.path.join(glob.escape(source), "*.ckpt.index")))
    if not index:
        raise FileNotFoundError(f"{source}: no *.ckpt.index (a Google TF checkpoint)")
    reader = open_checkpoint(index[0][: -len(".index")])
    transformer = _transformer(config_path, model_type)
    known = set(_checkpoint_names(transformer))
    tensors, skipped = {}, []
    names = reader.names()
    bar = keras.utils.Progbar(len(names), unit_name="tensor") if progress else None
    for name in names:
        if name not in known:
            skipped.append(name)
        else:
            hf_name, transpose = transformer.hf_variable_name(name)
            value = reader.get(name)
            tensors[hf_name] = np.ascontiguousarray(_cast(value.T if transpose else value, dtype))
        if bar is not None:
            bar.add(1)
    if not tensors:
        raise ValueError(f"{source}: none of its {len(names)} variables belongs to a {model_type} model")
    os.makedirs(target, exist_ok=True)
    temporary = os.path.join(target, f".model.safetensors.{os.getpid()}.tmp")
    save_file(tensors, temporary, metadata={"format": "pt"})
    os.replace(temporary, os.path.join(target, "model.safetensors"))
    hf_config = {key: value for key, value in config.items()}
    hf_config.setdefault("model_type", model_type)
    if dtype is not None:
        hf_config["torch_dtype"] = dtype
    _write_json(os.path.join(target, "config.json"), hf_config)
    _copy_vocab(source, target)
    return {"written": sorted(tensors), "skipped": skipped}


def hf_to_google(source: str, target: str, model_type: str | None = None, dtype: str | None = None,
                 progress: bool = True) -> dict:
    """Convert an HF directory (safetensors or .bin) to a Google checkpoint directory."""
    import keras

    from bert4keras.checkpoints import write_tf_checkpoint

    config_path, config = _read_config(source, ("config.json", "bert_config.json"))
    model_type = _model_type(config, model_type)
    transformer = _transformer(config_path, model_type)
    view = transformer.checkpoint_view(source)
    if view.reader.format == "tf":
        raise ValueError(f"{source} holds a TF checkpoint already; convert it with --to hf")
    tensors = {}
    names = _checkpoint_names(transformer)
    bar = keras.utils.Progbar(len(names), unit_name="tensor") if progress else None
    for name in names:
        if name in view:
            tensors[name] = _cast(view.get(name), dtype)
        if bar is not None:
            bar.add(1)
    if not tensors:
        raise ValueError(f"{source}: no weight of a {model_type} model found")
    os.makedirs(target, exist_ok=True)
    write_tf_checkpoint(os.path.join(target, "bert_model.ckpt"), tensors)
    google_config = {key: value for key, value in config.items()
                     if key not in ("architectures", "torch_dtype", "transformers_version")}
    _write_json(os.path.join(target, "bert_config.json"), google_config)
    _copy_vocab(source, target)
    return {"written": sorted(tensors), "skipped": view.unused()}
