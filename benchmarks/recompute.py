"""Recompute: peak memory and step time of a BERT-base-shaped training step, with and without.

Each (recompute, batch) configuration runs in a fresh process; its peak RSS
during a few AdamW steps (sampled every 2 ms) is the memory figure. Memory grows
linearly in the batch, so a line fitted per mode gives the largest batch that
fits a fixed budget (by default: the peak RSS without recompute at the middle
batch size). The time overhead is per sample, at the largest batch measured.

    python benchmarks/recompute.py [--backend torch] [--layers 12] [--seq 128] [--batches 16 32 48]
                                   [--default-allocator]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def worker(recompute: bool, batch: int, layers: int, seq: int, steps: int) -> dict:
    """Build BERT-base-shaped (hidden 768, 12 heads), train ``steps`` AdamW steps; peak RSS, times."""
    import time
    import warnings

    import keras

    from bert4keras.models import build_transformer_model
    from bert4keras.layers import TokenSlice

    keras.utils.set_random_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bert = build_transformer_model(vocab_size=30522, hidden_size=768, num_hidden_layers=layers,
                                       num_attention_heads=12, intermediate_size=3072,
                                       max_position=512, dropout_rate=0.1, recompute=recompute)
    logits = keras.layers.Dense(2)(TokenSlice(0)(bert.output))
    model = keras.Model(bert.inputs, logits)
    model.compile(keras.optimizers.AdamW(1e-5),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, (batch, seq)).astype("int32")
    x, y = [ids, np.zeros_like(ids)], rng.integers(0, 2, batch)
    times = []
    with PeakRSS() as peak:
        for _ in range(steps):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times.append(time.perf_counter() - start)
    return {"peak_mb": peak.mb, "step_s": float(np.median(times[1:]))}


class PeakRSS:
    """Highest resident set size seen (sampled every 2 ms) while the block runs."""

    def __enter__(self):
        import threading

        self.mb, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
        while not self._stop.wait(0.002):
            with open("/proc/self/statm") as f:
                self.mb = max(self.mb, int(f.read().split()[1]) * page_mb)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run(backend: str, recompute: bool, batch: int, layers: int, seq: int, steps: int,
        pin_mmap: bool = True) -> dict:
    # A fixed mmap threshold makes glibc hand freed tensors back to the OS, so RSS follows
    # the live tensors instead of the heap's high-water mark. Every step then pays page
    # faults for its activations, which slows the run without recompute more: time the
    # overhead with --default-allocator.
    env = dict(os.environ, KERAS_BACKEND=backend)
    if pin_mmap:
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    code = (f"import sys, json; sys.path.insert(0, {HERE!r}); import recompute as r; "
            f"print('RESULT', json.dumps(r.worker({recompute}, {batch}, {layers}, {seq}, {steps})))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT"):])
    raise RuntimeError(f"recompute={recompute} batch={batch} failed:\n{out.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 48])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--budget-mb", type=float, default=None,
                        help="memory budget; default: peak without recompute at the middle batch")
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc's mmap threshold alone (for the time overhead; RSS then "
                             "is the heap's high-water mark)")
    args = parser.parse_args()
    print(f"BERT-base shape ({args.layers} layers, hidden 768), seq {args.seq}, AdamW, "
          f"backend {args.backend}, {os.cpu_count()} CPU cores")
    results = {}
    for flag in (False, True):
        for batch in args.batches:
            r = results[flag, batch] = run(args.backend, flag, batch, args.layers, args.seq,
                                           args.steps, pin_mmap=not args.default_allocator)
            print(f"  recompute={'on ' if flag else 'off'} batch {batch:3d}: peak RSS "
                  f"{r['peak_mb']:8.0f} MB  step {r['step_s']:6.2f} s  "
                  f"({r['step_s'] / batch * 1000:6.0f} ms/sample)", flush=True)
    budget = args.budget_mb or results[False, args.batches[len(args.batches) // 2]]["peak_mb"]
    fits = {}
    for flag in (False, True):
        slope, intercept = np.polyfit(args.batches, [results[flag, b]["peak_mb"]
                                                     for b in args.batches], 1)
        fits[flag] = (budget - intercept) / slope
        print(f"  recompute={'on ' if flag else 'off'}: {slope:6.1f} MB per sample, "
              f"{intercept:6.0f} MB fixed -> largest batch in {budget:.0f} MB: {fits[flag]:.1f}")
    largest = args.batches[-1]
    overhead = results[True, largest]["step_s"] / results[False, largest]["step_s"] - 1
    print(f"batch multiplier at a {budget:.0f} MB budget: {fits[True] / fits[False]:.2f}x; "
          f"time per sample at batch {largest}: {overhead:+.0%}")


if __name__ == "__main__":
    main()
