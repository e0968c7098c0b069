"""The served model: a model directory loaded once, run on fixed (batch, length) shapes.

Two kinds of directory are served:

* an encoder (HF ``config.json`` or Google ``bert_config.json``, weights, ``vocab.txt``)
  for the ``embed`` task: the sequence output, pooled per text;
* what ``python -m bert4keras train`` saves (``model.keras``, ``classifier.json``,
  ``vocab.txt``) for the ``predict`` task: one probability per label.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

TASKS = ("embed", "predict")
POOLINGS = ("mean", "cls")


def detect_task(model_dir: str) -> str:
    """``predict`` for a directory written by ``train``, else ``embed``."""
    return "predict" if os.path.exists(os.path.join(model_dir, "classifier.json")) else "embed"


def length_buckets(max_length: int, buckets: list[int] | None = None) -> list[int]:
    """Sorted padded lengths, the longest being ``max_length`` (default: 32, 64, ... below it)."""
    if buckets is None:
        buckets = [b for b in (32, 64, 128, 256) if b < max_length]
    bad = [b for b in buckets if b < 2 or b > max_length]
    if bad:
        raise ValueError(f"bucket lengths {bad} must lie in [2, max_length={max_length}]")
    return sorted(set(buckets) | {max_length})


def batch_sizes(length: int, max_batch_size: int, max_batch_tokens: int) -> list[int]:
    """Padded batch sizes for one bucket: powers of two (1 always) within both budgets."""
    sizes, b = [1], 2
    while b <= max_batch_size and b * length <= max_batch_tokens:
        sizes.append(b)
        b *= 2
    return sizes


@dataclass
class ServedModel:
    """A tokenizer and a forward function on (token ids, segment ids) int32 arrays."""

    task: str
    name: str
    tokenizer: object
    forward: Callable[[np.ndarray, np.ndarray], np.ndarray]
    max_length: int
    labels: list[str] = field(default_factory=list)

    def warm_up(self, shapes: list[tuple[int, int]]) -> None:
        """Run every (batch, length) shape once so the backend compiles it now, not on a request;
        the tokenizer's first call (building its fast path) happens here too."""
        self.tokenizer.encode_batch(["warm up"], return_offsets=True)
        for rows, length in shapes:
            ids = np.zeros((rows, length), np.int32)
            ids[:, 0] = 1  # one real token per row: an all-padding row is not a real input
            self.forward(ids, np.zeros_like(ids))


def _keras_forward(model) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``predict_on_batch`` (compiled once per input shape on JAX) returning float32 numpy."""

    def forward(ids: np.ndarray, segments: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch([ids, segments]), dtype=np.float32)

    return forward


def load_served_model(model_dir: str, task: str | None = None, max_length: int | None = None) -> ServedModel:
    """Load ``model_dir`` for ``task`` (default: from the directory); errors name the file."""
    from bert4keras.cli import find_model_files, load_classifier, vocab_is_lowercase

    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"model directory not found: {model_dir}")
    task = task or detect_task(model_dir)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    name = os.path.basename(os.path.normpath(model_dir))
    if task == "predict":
        if detect_task(model_dir) != "predict":
            raise ValueError(f"{model_dir}: task 'predict' needs a classifier saved by "
                             "'python -m bert4keras train' (model.keras, classifier.json, vocab.txt)")
        model, tokenizer, info = load_classifier(model_dir)
        limit = int(info["maxlen"])
        return ServedModel("predict", name, tokenizer, _keras_forward(model),
                           min(max_length or limit, limit), list(info["labels"]))
    if detect_task(model_dir) == "predict":
        raise ValueError(f"{model_dir} holds a classifier saved by 'train': serve it with --task predict")

    from bert4keras.models import MODELS, build_transformer_model
    from bert4keras.tokenizers import Tokenizer

    config_path, checkpoint, vocab = find_model_files(model_dir)
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    model_type = config.get("model_type", "bert")
    if model_type not in MODELS:
        raise ValueError(f"{config_path}: model_type {model_type!r} is not one of {', '.join(sorted(MODELS))}")
    model = build_transformer_model(config_path, checkpoint, model=model_type)
    limit = int(config.get("max_position_embeddings", 512))
    tokenizer = Tokenizer(vocab, do_lower_case=vocab_is_lowercase(model_dir, vocab))
    return ServedModel("embed", name, tokenizer, _keras_forward(model), min(max_length or limit, limit))
