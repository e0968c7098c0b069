"""The machine's limits, measured in the run that quotes them.

* compute limit: the best sustained GEMM rate (GFLOP/s) of every library present
  (numpy, torch, XLA via JAX) on the model's own matmul shapes;
* bandwidth limit: the best streaming matrix-vector rate (GB/s) over a matrix much
  larger than the caches (what bounds step-wise decoding).

Each library runs in its own process (thread pools of one library slow the next).
Every benchmark turns its figures into fractions of these limits with
:func:`fraction`, which refuses a fraction above 100%: that would mean the limit
was measured wrong, not that the model beat the machine.

    python benchmarks/limits.py [--hidden 768 --intermediate 3072 --tokens 1024]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARIES = ("numpy", "torch", "jax")


def gemm_shapes(hidden: int, intermediate: int, tokens: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of a BERT layer's matmuls on ``tokens`` rows: q/k/v/o, fused qkv, FFN in and out."""
    return [(tokens, hidden, hidden), (tokens, hidden, 3 * hidden),
            (tokens, hidden, intermediate), (tokens, intermediate, hidden)]


def sustained(fn, sync=lambda r: r, seconds: float = 0.15, repeats: int = 7) -> float:
    """Median seconds per call over ``repeats`` blocks of back-to-back calls lasting ``seconds``."""
    sync(fn())
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < seconds / 3:  # calibrate the block size
        sync(fn())
        calls += 1
    per_block = max(1, int(calls * 3))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(per_block):
            result = fn()
        sync(result)
        times.append((time.perf_counter() - start) / per_block)
    return statistics.median(times)


def _kernels(library: str, dtype: str):
    """(make(shape) -> array, mm(a, b), mv(a, x), sync) for one library."""
    if library == "numpy":
        import numpy as np

        if dtype != "float32":
            raise ValueError("numpy has no bfloat16 GEMM")
        rng = np.random.default_rng(0)
        return (lambda shape: rng.standard_normal(shape, dtype=np.float32),
                np.matmul, np.matmul, lambda r: r)
    if library == "torch":
        import torch

        torch_dtype = getattr(torch, dtype)
        return (lambda shape: torch.randn(shape, dtype=torch_dtype),
                torch.mm, torch.mv, lambda r: r)
    import jax
    import jax.numpy as jnp

    key = jax.random.key(0)
    dot = jax.jit(jnp.dot)
    return (lambda shape: jax.random.normal(key, shape, getattr(jnp, dtype)),
            dot, dot, lambda r: r.block_until_ready())


def measure_library(library: str, shapes: list, dtype: str = "float32",
                    bandwidth: bool = True) -> dict:
    """GFLOP/s per GEMM shape and the matrix-vector GB/s of one library, in this process."""
    make, mm, mv, sync = _kernels(library, dtype)
    gemm = {}
    for m, k, n in shapes:
        a, b = make((m, k)), make((k, n))
        gemm[f"{m}x{k}x{n}"] = 2 * m * k * n / sustained(lambda: mm(a, b), sync) / 1e9
    result = {"gemm_gflops": gemm}
    if bandwidth:
        rows, cols = 16384, 4096  # 256 MB in float32: far beyond any cache
        a, x = make((rows, cols)), make((cols,))
        nbytes = rows * cols * (4 if dtype == "float32" else 2)
        result["matvec_gbs"] = nbytes / sustained(lambda: mv(a, x), sync, seconds=0.5) / 1e9
    return result


def _run_library(library: str, shapes: list, dtype: str, bandwidth: bool) -> dict:
    code = (f"import sys, json; sys.path.insert(0, {HERE!r}); import limits; "
            f"print('RESULT', json.dumps(limits.measure_library({library!r}, {shapes!r}, "
            f"{dtype!r}, {bandwidth!r})))")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT"):])
    raise RuntimeError(f"limits: {library} ({dtype}) failed:\n{out.stderr[-3000:]}")


def measure(shapes: list, dtype: str = "float32", bandwidth: bool = True) -> dict:
    """The limits for ``shapes`` over every installed library: ``gflops`` (best GEMM),
    ``gbs`` (best matrix-vector stream, when asked) and each library's figures."""
    per_library = {}
    for library in LIBRARIES:
        if importlib.util.find_spec(library) is None or (library == "numpy" and dtype != "float32"):
            continue
        per_library[library] = _run_library(library, [list(s) for s in shapes], dtype, bandwidth)
    best = max(((v, lib, s) for lib, r in per_library.items() for s, v in r["gemm_gflops"].items()))
    limits = {"dtype": dtype, "gflops": best[0], "gflops_by": f"{best[1]} {best[2]}",
              "per_library": per_library}
    if bandwidth:
        gbs, lib = max((r["matvec_gbs"], lib) for lib, r in per_library.items())
        limits.update(gbs=gbs, gbs_by=lib)
    return limits


def fraction(achieved: float, limit: float, what: str) -> float:
    """``achieved / limit``; a value above 1 means the limit is wrong, so it is an error."""
    value = achieved / limit
    if value > 1.0:
        raise AssertionError(f"{what}: {value:.1%} of the limit ({achieved:.4g} of {limit:.4g}); "
                             "the limit was measured wrong")
    return value


def write_json(path: str, report: dict) -> None:
    """Write ``report`` to ``path`` atomically (a temporary file renamed over it)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, path)


def machine() -> dict:
    """What the figures were measured on: CPU model and flags that matter, cores, libraries."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    versions = {}
    for name in ("numpy", "torch", "jax", "keras", "transformers"):
        if importlib.util.find_spec(name) is not None:
            from importlib.metadata import PackageNotFoundError, version

            try:
                versions[name] = version(name)
            except PackageNotFoundError:
                pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "isa": sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")),
            "versions": versions, "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--intermediate", type=int, default=3072)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    print(json.dumps({"machine": machine(),
                      "limits": measure(gemm_shapes(args.hidden, args.intermediate, args.tokens),
                                        args.dtype)}, indent=1))


if __name__ == "__main__":
    main()
