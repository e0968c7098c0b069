"""The served model: a model directory loaded once, run on fixed (batch, length) shapes.

Three kinds of directory are served:

* an encoder (HF ``config.json`` or Google ``bert_config.json``, weights, ``vocab.txt``)
  for the ``embed`` task (the sequence output, pooled per text) or, built as a language
  model, the ``generate`` task;
* a classifier saved by ``python -m bert4keras train`` (``model.keras``, ``classifier.json``,
  ``vocab.txt``) for the ``predict`` task: one probability per label;
* an NER model saved by ``train --task ner`` (``model.keras``, ``ner.json``, ``vocab.txt``)
  for the ``ner`` task: CRF emissions or GlobalPointer span logits per text.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

TASKS = ("embed", "predict", "ner", "generate")
POOLINGS = ("mean", "cls")


def detect_task(model_dir: str) -> str:
    """``predict`` / ``ner`` for a directory written by ``train``, else ``embed``."""
    if os.path.exists(os.path.join(model_dir, "classifier.json")):
        return "predict"
    if os.path.exists(os.path.join(model_dir, "ner.json")):
        return "ner"
    return "embed"


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
    """A tokenizer and a forward function on (token ids, segment ids) int32 arrays; for ``ner``
    also ``ner_info`` (head, labels) and the CRF transitions, for ``generate`` the Keras model
    behind ``model.generate`` and its ``application`` (lm or unilm)."""

    task: str
    name: str
    tokenizer: object
    forward: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    max_length: int
    labels: list[str] = field(default_factory=list)
    ner_info: dict | None = None
    transitions: np.ndarray | None = None
    generator: object = None
    application: str = "lm"

    def warm_up(self, shapes: list[tuple[int, int]], max_new_tokens: int = 16) -> None:
        """Run every (batch, length) shape once so the backend compiles it now, not on a request;
        the tokenizer's first call (building its fast path) happens here too. A generator runs
        one greedy and one sampled prompt of ``max_new_tokens``."""
        self.tokenizer.encode_batch(["warm up"], return_offsets=True)
        if self.generator is not None:
            from bert4keras.cli import prompt_ids

            prompt = prompt_ids(self.tokenizer, "warm up", self.application)
            for seed in (None, 0):
                self.generator.generate([prompt], max_new_tokens, seed=seed, end_id=self.tokenizer._token_end_id)
            return
        for rows, length in shapes:
            ids = np.zeros((rows, length), np.int32)
            ids[:, 0] = 1  # one real token per row: an all-padding row is not a real input
            self.forward(ids, np.zeros_like(ids))


def _keras_forward(model) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``predict_on_batch`` (compiled once per input shape on JAX) returning float32 numpy."""

    def forward(ids: np.ndarray, segments: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch([ids, segments]), dtype=np.float32)

    return forward


def load_served_model(model_dir: str, task: str | None = None, max_length: int | None = None,
                      application: str | None = None) -> ServedModel:
    """Load ``model_dir`` for ``task`` (default: from the directory); errors name the file."""
    from bert4keras.cli import load_classifier, load_encoder, load_generator
    from bert4keras.cli_ner import load_ner

    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"model directory not found: {model_dir}")
    saved = detect_task(model_dir)
    task = task or saved
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    name = os.path.basename(os.path.normpath(model_dir))
    if task in ("predict", "ner") and saved != task:
        what = "a classifier saved by 'train'" if task == "predict" else "an NER model saved by 'train --task ner'"
        raise ValueError(f"{model_dir}: task {task!r} needs {what} (model.keras, "
                         f"{'classifier.json' if task == 'predict' else 'ner.json'}, vocab.txt)")
    if task not in ("predict", "ner") and saved != "embed":
        raise ValueError(f"{model_dir} holds a model saved by 'train': serve it with --task {saved}")
    if task == "predict":
        model, tokenizer, info = load_classifier(model_dir)
        limit = int(info["maxlen"])
        return ServedModel("predict", name, tokenizer, _keras_forward(model),
                           min(max_length or limit, limit), list(info["labels"]))
    if task == "ner":
        model, tokenizer, info, trans = load_ner(model_dir)
        limit = int(info["maxlen"])
        return ServedModel("ner", name, tokenizer, _keras_forward(model), min(max_length or limit, limit),
                           list(info["labels"]), ner_info=info, transitions=trans)
    if task == "generate":
        model, tokenizer, application = load_generator(model_dir, application)
        limit = int(getattr(model.transformer, "max_position", None) or 512)
        return ServedModel("generate", name, tokenizer, None, min(max_length or limit, limit),
                           generator=model, application=application)
    model, tokenizer, config = load_encoder(model_dir)
    limit = int(config.get("max_position_embeddings", 512))
    return ServedModel("embed", name, tokenizer, _keras_forward(model), min(max_length or limit, limit))
