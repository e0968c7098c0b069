"""Pretrain a BERT-style model with masked-LM (RoBERTa), causal-LM (GPT) or UniLM objectives on
records written by data_utils.py, on Keras 3 (JAX or PyTorch; TensorFlow is not needed).

    python pretraining/pretraining.py --mode mlm --data records/zh-mlm --vocab vocab.txt \\
        --preset zh-tiny --output runs/zh-tiny

The output directory holds `checkpoint-<step>/` directories (a Google checkpoint
`bert_model.ckpt` with `bert_config.json` and `vocab.txt`, plus the optimizer state) and a
`latest` file naming the newest; running the same command again resumes from it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
from keras import ops  # noqa: E402

from bert4keras.checkpoints import CheckpointError  # noqa: E402
from bert4keras.models import build_transformer_model  # noqa: E402
from bert4keras.optimizers import (  # noqa: E402
    AdaFactor, Adam, extend_with_gradient_accumulation, extend_with_layer_adaptation,
    extend_with_piecewise_linear_lr, extend_with_weight_decay,
)
from bert4keras.tokenizers import Tokenizer, load_vocab  # noqa: E402
from pretraining.data_utils import DataError, PretrainingDataset, Records  # noqa: E402

APPLICATIONS = {"mlm": "encoder", "lm": "lm", "unilm": "unilm"}

# Sizes of the model a config is generated for when --config is not given.
PRESETS = {
    # A small Chinese BERT that trains in bounded time on a 2-core CPU (docs/pretraining.md).
    "zh-tiny": dict(layers=4, hidden=256, heads=4, intermediate=1024, sequence_length=128,
                    batch_size=32, steps=3000, warmup_steps=300, learning_rate=2e-3),
    # The 0.11.5 script's scale (BERT-base, batch 4096 through gradient accumulation).
    "base": dict(layers=12, hidden=768, heads=12, intermediate=3072, sequence_length=512,
                 batch_size=4096, grad_accum_steps=16, steps=125000, warmup_steps=3125,
                 learning_rate=1.76e-3),
}
DEFAULTS = dict(layers=4, hidden=256, heads=4, intermediate=1024, sequence_length=128,
                batch_size=32, grad_accum_steps=1, steps=3000, warmup_steps=300,
                learning_rate=2e-3, save_every=500, log_every=50)
# --smoke shrinks only sizes: the same code runs on a model and batch that take seconds.
SMOKE = dict(layers=1, hidden=32, heads=2, intermediate=64, sequence_length=32, batch_size=4,
             steps=4, warmup_steps=1, save_every=2, log_every=1)


class ConfigError(ValueError):
    """Inconsistent options, config, vocab, records or checkpoint; the message says the fix."""


# -- loss and metric: cross-entropy / accuracy over target positions only ---------------------

class MaskedCrossEntropy(keras.losses.Loss):
    """Mean cross-entropy over positions whose target is >= 0 (masked tokens for MLM, next
    tokens for LM/UniLM); other positions (target -1) carry no loss."""

    def __init__(self, name: str = "masked_cross_entropy"):
        super().__init__(name=name, reduction="sum")

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The targets carry the mask; Keras's padding mask on `y_pred` must not weight the mean again."""
        return self.call(y_true, y_pred)

    def call(self, y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, "int32"), ops.shape(y_pred)[:-1])
        weight = ops.cast(y_true >= 0, "float32")
        loss = keras.losses.sparse_categorical_crossentropy(
            ops.maximum(y_true, 0), ops.cast(y_pred, "float32"), from_logits=True)
        return ops.sum(loss * weight) / ops.maximum(ops.sum(weight), 1.0)


class MaskedAccuracy(keras.metrics.Metric):
    """Share of target positions (target >= 0) whose argmax prediction is right."""

    def __init__(self, name: str = "accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.reshape(ops.cast(y_true, "int32"), ops.shape(y_pred)[:-1])
        weight = ops.cast(y_true >= 0, "float32")
        hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
        self.correct.assign_add(ops.sum(hit * weight))
        self.total.assign_add(ops.sum(weight))

    def result(self):
        return self.correct / ops.maximum(self.total, 1.0)


# -- model and optimizer --------------------------------------------------------------------

def build_optimizer(name: str, learning_rate: float, weight_decay: float, warmup_steps: int,
                    total_steps: int, grad_accum_steps: int = 1) -> keras.optimizers.Optimizer:
    """AdamW, LAMB (AdamW + layer adaptation) or AdaFactor with decoupled weight decay and a
    piecewise-linear warm-up then linear decay to 0, counted in optimizer updates."""
    base = {"adam": Adam, "lamb": Adam, "adafactor": AdaFactor}[name]
    optimizer = extend_with_weight_decay(base)
    params = dict(learning_rate=learning_rate, weight_decay_rate=weight_decay,
                  exclude_from_weight_decay=["Norm", "bias"])
    if name == "lamb":
        optimizer = extend_with_layer_adaptation(optimizer)
        params["exclude_from_layer_adaptation"] = ["Norm", "bias"]
    if name in ("adam", "lamb"):
        params["bias_correction"] = False  # as the 0.11.5 script
    optimizer = extend_with_piecewise_linear_lr(optimizer)
    warmup_steps = max(1, min(warmup_steps, total_steps - 1))
    params["lr_schedule"] = {warmup_steps: 1.0, max(total_steps, warmup_steps + 1): 0.0}
    if grad_accum_steps > 1:
        optimizer = extend_with_gradient_accumulation(optimizer)
        params["grad_accum_steps"] = grad_accum_steps
    return optimizer(**params)


def build_model(config_path: str, mode: str, checkpoint_path: str | None = None, model: str = "bert"):
    """The Transformer (for checkpoint export) and its Keras model, outputting MLM logits."""
    return build_transformer_model(config_path, checkpoint_path, model=model,
                                   application=APPLICATIONS[mode], with_mlm="linear",
                                   return_keras_model=False)


def make_config(args, vocab_size: int) -> dict:
    """A Google-style bert_config.json for the requested sizes."""
    return {
        "vocab_size": vocab_size, "hidden_size": args.hidden, "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads, "intermediate_size": args.intermediate,
        "hidden_act": "gelu", "hidden_dropout_prob": args.dropout,
        "attention_probs_dropout_prob": args.dropout, "max_position_embeddings": max(512, args.sequence_length),
        "type_vocab_size": 2, "initializer_range": 0.02,
    }


# -- checkpoints ------------------------------------------------------------------------------

def _write_json(path: str, value) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, ensure_ascii=False)


def save_checkpoint(output: str, step: int, bert, optimizer, config: dict, vocab_path: str,
                    state: dict, keep: int = 2) -> str:
    """Write `checkpoint-<step>/` (Google checkpoint + config + vocab + optimizer state) under a
    temporary name, rename it into place, then point `latest` at it and drop older ones."""
    name = f"checkpoint-{step}"
    final = os.path.join(output, name)
    tmp = tempfile.mkdtemp(prefix=f".{name}.", dir=output)
    try:
        bert.save_weights_as_checkpoint(os.path.join(tmp, "bert_model.ckpt"))
        _write_json(os.path.join(tmp, "bert_config.json"), config)
        shutil.copyfile(vocab_path, os.path.join(tmp, "vocab.txt"))
        np.savez(os.path.join(tmp, "optimizer.npz"),
                 **{f"{i:05d}": ops.convert_to_numpy(v) for i, v in enumerate(optimizer.variables)})
        _write_json(os.path.join(tmp, "state.json"), {**state, "step": step,
                    "optimizer_variables": [list(v.shape) for v in optimizer.variables]})
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with open(os.path.join(output, "latest.tmp"), "w") as f:
        f.write(name + "\n")
    os.replace(os.path.join(output, "latest.tmp"), os.path.join(output, "latest"))
    steps = sorted(int(d.split("-")[1]) for d in os.listdir(output)
                   if d.startswith("checkpoint-") and d.split("-")[1].isdigit())
    for old in steps[:-keep]:
        shutil.rmtree(os.path.join(output, f"checkpoint-{old}"))
    return final


def latest_checkpoint(output: str) -> str | None:
    """The directory `output/latest` names, or None when there is none."""
    pointer = os.path.join(output, "latest")
    if not os.path.exists(pointer):
        return None
    with open(pointer) as f:
        path = os.path.join(output, f.read().strip())
    if not os.path.isdir(path):
        raise ConfigError(f"{pointer} names {path}, which does not exist; delete {pointer} to start over")
    return path


def restore_optimizer(optimizer, model, path: str) -> None:
    """Build the optimizer's variables and fill them from `optimizer.npz`."""
    optimizer.build(model.trainable_variables)
    with open(os.path.join(path, "state.json")) as f:
        shapes = json.load(f)["optimizer_variables"]
    current = [list(v.shape) for v in optimizer.variables]
    if shapes != current:
        raise ConfigError(f"{path}: the saved optimizer state ({len(shapes)} variables) does not fit this "
                          f"run's optimizer ({len(current)} variables; a different --optimizer or "
                          "--grad-accum-steps?); use the options of the interrupted run or another --output")
    with np.load(os.path.join(path, "optimizer.npz")) as saved:
        for i, variable in enumerate(optimizer.variables):
            variable.assign(saved[f"{i:05d}"])


# -- the run --------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=sorted(APPLICATIONS), required=True)
    p.add_argument("--data", required=True, help="records directory written by data_utils.py")
    p.add_argument("--vocab", required=True, help="vocab.txt the records were written with")
    p.add_argument("--output", required=True, help="run directory (checkpoints, metrics.csv)")
    p.add_argument("--config", help="bert_config.json; default: generated from the sizes below")
    p.add_argument("--checkpoint", help="initial Google checkpoint (default: random initialisation)")
    p.add_argument("--model", default="bert", help="bert4keras model name (default bert)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="sizes and schedule; explicit options win")
    for name in ("layers", "hidden", "heads", "intermediate", "sequence_length", "batch_size",
                 "grad_accum_steps", "steps", "warmup_steps"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                       help=f"default {DEFAULTS[name]}")
    p.add_argument("--learning-rate", type=float, default=None, help=f"default {DEFAULTS['learning_rate']}")
    p.add_argument("--optimizer", choices=["lamb", "adam", "adafactor"], default="lamb",
                   help="default lamb")
    p.add_argument("--weight-decay", type=float, default=0.01, help="default 0.01")
    p.add_argument("--dropout", type=float, default=0.1, help="for a generated config (default 0.1)")
    p.add_argument("--mask-rate", type=float, default=0.15, help="share of words chosen for MLM (default 0.15)")
    p.add_argument("--save-every", type=int, default=None, help="checkpoint every N updates (default 500)")
    p.add_argument("--log-every", type=int, default=None, help="print/log every N updates (default 50)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and data order (default 0)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes and 4 steps, same code path")
    args = p.parse_args(argv)
    preset = {**DEFAULTS, **PRESETS.get(args.preset, {}), **(SMOKE if args.smoke else {})}
    for key, value in preset.items():
        if getattr(args, key) is None:  # options given explicitly win
            setattr(args, key, value)
    return args


def check_setup(args, records: Records, config: dict, vocab_size: int) -> None:
    """Refuse combinations that cannot train, naming the value and the fix."""
    if config.get("vocab_size") != vocab_size:
        raise ConfigError(f"the config has vocab_size={config.get('vocab_size')} but {args.vocab} has "
                          f"{vocab_size} tokens; use the vocab.txt that belongs to the config")
    if records.meta["vocab_size"] != vocab_size:
        raise ConfigError(f"{args.data} was written with a {records.meta['vocab_size']}-token vocab but "
                          f"{args.vocab} has {vocab_size}; rewrite the records with this --vocab")
    max_position = config.get("max_position_embeddings", config.get("max_position", 512))
    if args.sequence_length > max_position:
        raise ConfigError(f"--sequence-length {args.sequence_length} exceeds the config's "
                          f"max_position_embeddings={max_position}; lower it")
    if args.batch_size % args.grad_accum_steps:
        raise ConfigError(f"--batch-size {args.batch_size} is not divisible by --grad-accum-steps "
                          f"{args.grad_accum_steps}")
    devices = len(keras.distribution.list_devices()) if keras.backend.backend() == "jax" else 1
    if (args.batch_size // args.grad_accum_steps) % devices:
        raise ConfigError(f"the micro-batch {args.batch_size // args.grad_accum_steps} does not split "
                          f"over {devices} devices; choose a --batch-size that does")


def train(args) -> dict:
    """Run (or resume) pretraining; returns the last logged metrics."""
    if not os.path.exists(args.vocab):
        raise ConfigError(f"vocab file {args.vocab!r} not found")
    records = Records(args.data)
    tokenizer = Tokenizer(args.vocab, do_lower_case=True)
    vocab_size = len(load_vocab(args.vocab))
    os.makedirs(args.output, exist_ok=True)
    resume = latest_checkpoint(args.output)
    if args.config:
        if not os.path.exists(args.config):
            raise ConfigError(f"config file {args.config!r} not found")
        with open(args.config, encoding="utf-8") as f:
            config = json.load(f)
    else:
        config = make_config(args, vocab_size)
    check_setup(args, records, config, vocab_size)
    state = {"mode": args.mode, "model": args.model, "config": config, "seed": args.seed,
             "batch_size": args.batch_size, "sequence_length": args.sequence_length}
    if resume:
        with open(os.path.join(resume, "state.json")) as f:
            saved = json.load(f)
        differing = [k for k in state if saved.get(k) != state[k]]
        if differing:
            raise ConfigError(f"{args.output} holds a run with other {', '.join(differing)} "
                              f"({resume}/state.json); rerun with its options or use another --output")

    keras.utils.set_random_seed(args.seed)  # the same initial weights for the same seed
    if keras.backend.backend() == "jax" and len(keras.distribution.list_devices()) > 1:
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    micro_batch = args.batch_size // args.grad_accum_steps
    config_path = os.path.join(args.output, "bert_config.json")
    _write_json(config_path, config)
    initial = os.path.join(resume, "bert_model.ckpt") if resume else args.checkpoint
    bert = build_model(config_path, args.mode, initial, args.model)
    model = bert.model
    optimizer = build_optimizer(args.optimizer, args.learning_rate, args.weight_decay,
                                args.warmup_steps, args.steps, args.grad_accum_steps)
    model.compile(optimizer=optimizer, loss=MaskedCrossEntropy(), metrics=[MaskedAccuracy()])
    start = 0
    if resume:
        restore_optimizer(optimizer, model, resume)
        start = int(ops.convert_to_numpy(optimizer.iterations))
        print(f"resuming from {resume} at step {start}")
    data = PretrainingDataset(records, args.mode, tokenizer, micro_batch, args.sequence_length,
                              args.steps * args.grad_accum_steps, args.seed, args.mask_rate)

    log_path = os.path.join(args.output, "metrics.csv")
    if os.path.exists(log_path):  # drop rows logged after the checkpoint resumed from
        with open(log_path, newline="") as f:
            rows = list(csv.reader(f))
        with open(log_path + ".tmp", "w", newline="") as f:
            csv.writer(f).writerows(rows[:1] + [r for r in rows[1:] if int(r[0]) <= start])
        os.replace(log_path + ".tmp", log_path)
    new_log = not os.path.exists(log_path)
    logs, window = {}, []
    with open(log_path, "a", newline="") as log_file:
        writer = csv.writer(log_file)
        if new_log:
            writer.writerow(["step", "loss", "accuracy", "learning_rate", "tokens_per_s", "s_per_step"])
        elapsed, tokens = 0.0, 0
        for step in range(start, args.steps):
            tic = time.perf_counter()
            for micro in range(args.grad_accum_steps):
                x, y = data[step * args.grad_accum_steps + micro]
                out = model.train_on_batch(x, y, return_dict=True)
                tokens += int((x[0] != data.pad_id).sum())
                window.append((float(out["loss"]), float(out["accuracy"])))
            elapsed += time.perf_counter() - tic  # data + training, not logging or saving
            done = step + 1
            if done % args.log_every == 0 or done == args.steps:
                lr = float(ops.convert_to_numpy(optimizer.learning_rate))
                loss, acc = np.mean(window, axis=0)
                count = len(window) // args.grad_accum_steps
                logs = {"step": done, "loss": float(loss), "accuracy": float(acc), "learning_rate": lr,
                        "tokens_per_s": tokens / elapsed, "s_per_step": elapsed / count}
                print(f"step {done}/{args.steps} | loss {loss:.4f} | accuracy {acc:.4f} | lr {lr:.2e} | "
                      f"{tokens / elapsed:.0f} tokens/s | {elapsed / count:.3f} s/step", flush=True)
                writer.writerow([done, f"{loss:.5f}", f"{acc:.5f}", f"{lr:.3e}",
                                 f"{tokens / elapsed:.1f}", f"{elapsed / count:.4f}"])
                log_file.flush()
                elapsed, tokens, window = 0.0, 0, []
            if done % args.save_every == 0 or done == args.steps:
                save_checkpoint(args.output, done, bert, optimizer, config, args.vocab, state)
    return logs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    except (ConfigError, DataError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
