"""``make bench``: every benchmark in one run, HF side by side, written to benchmarks/results/.

Runs, each in its own processes and one after the other (never two at once):
encoder forward (MiniLM, BERT-base; fp32 and ``mixed_bfloat16``), the MiniLM fine-tuning
step, generation, tokenizers, checkpoint loading, recompute and serving. Writes

* ``results/latest.json``: every figure, the limits and the machine they were measured on;
* ``results/latest.md``: the summary table (ratios to HF, fractions of the limit) and each
  benchmark's own report;
* ``results/ratios.png``: the ratios to HF as a bar chart (needs matplotlib; without it the
  table says so).

    python benchmarks/run_all.py [--quick] [--only encoder train_step ...]

``--quick`` uses fewer repeats (a smoke run, not figures to quote).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, HERE)
import limits  # noqa: E402


def benchmarks(quick: bool) -> dict[str, list[str]]:
    """name -> command line (relative to the benchmarks folder); the first two write JSON."""
    rounds = "2" if quick else "3"
    return {
        "encoder": ["encoder.py", "--rounds", rounds, "--repeats", "3" if quick else "5", "--bf16",
                    "--json", os.path.join(RESULTS, "encoder.json")],
        "train_step": ["train_step.py", "--rounds", rounds, "--steps", "3" if quick else "6",
                       "--json", os.path.join(RESULTS, "train_step.json")],
        "generate": ["generate.py", "--rounds", rounds, "--also-torch"],
        "tokenizer": ["tokenizer.py", "--repeats", rounds],
        "checkpoint_load": ["checkpoint_load.py", "--repeats", rounds],
        "recompute": ["recompute.py"],
        "serve": ["serve.py"],
    }


def run(name: str, argv: list[str]) -> dict:
    """Run one benchmark script; its stdout is its report (JSON where it writes some)."""
    start, lines = time.time(), []
    with tempfile.TemporaryFile("w+") as stderr:
        with subprocess.Popen([sys.executable, os.path.join(HERE, argv[0])] + argv[1:], text=True,
                              stdout=subprocess.PIPE, stderr=stderr, cwd=os.path.dirname(HERE),
                              env=dict(os.environ, PYTHONUNBUFFERED="1")) as process:
            for line in process.stdout:  # echoed as it comes: a long run shows its progress
                print(f"  [{name}] {line}", end="", flush=True)
                lines.append(line)
        stderr.seek(0)
        error = stderr.read()[-2000:] if process.returncode else ""
    result = {"command": " ".join(["python", "benchmarks/" + argv[0]] + argv[1:]),
              "returncode": process.returncode, "seconds": time.time() - start,
              "stdout": "".join(lines), "stderr_tail": error}
    if "--json" in argv and process.returncode == 0:
        with open(argv[argv.index("--json") + 1]) as f:
            result["data"] = json.load(f)
    print(f"{name}: exit {process.returncode} after {result['seconds']:.0f} s", flush=True)
    return result


def summary_rows(results: dict) -> list[dict]:
    """One row per (work, implementation): speed ratio to HF and fraction of the limit."""
    rows = []
    encoder = results.get("encoder", {}).get("data")
    if encoder:
        for model, result in encoder["models"].items():
            for row in result["rows"]:
                rows.append({"work": f"{model.split(' ')[0]} forward b{encoder['batch']}x{encoder['seq']}",
                             "who": row["name"], "figure": f"{row['tokens_per_s']:,.0f} tokens/s",
                             "vs_hf": row["vs_hf"], "range": row["vs_hf_range"],
                             "limit": row["fraction_of_limit"]})
    train = results.get("train_step", {}).get("data")
    if train:
        for row in train["rows"]:
            rows.append({"work": f"MiniLM fine-tune step b{train['batch']}x{train['seq']}",
                         "who": row["name"],
                         "figure": f"{row['step_s'] * 1000:,.0f} ms, {row['peak_mb']:,.0f} MB "
                                   f"(RSS {row['rss_vs_hf']:.2f}x HF)",
                         # a speed ratio, as for the encoder: above 1 is faster than HF
                         "vs_hf": 1 / row["time_vs_hf"],
                         "range": [1 / row["time_vs_hf_range"][1], 1 / row["time_vs_hf_range"][0]],
                         "limit": row["fraction_of_limit"]})
    return rows


def markdown(results: dict, machine: dict, rows: list[dict], chart: str | None) -> str:
    isa = ", ".join(machine["isa"]) or "no AVX2/AVX-512"
    lines = [
        "# Benchmarks", "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores ({isa}); Python {machine['python']}; "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()) + ".",
        f"Load average at start {machine['load_average'][0]:.1f}, at end "
        f"{machine['load_average_end'][0]:.1f} (other work shares the machine: read the ratios, "
        "which are paired within each round, before the absolute figures).", "",
        "Speed is relative to HF transformers (PyTorch, sdpa) in the same round: above 1.00 is "
        "faster (median over rounds, spread in brackets). *Limit* is the fraction of the "
        "machine's limit measured in the same run (benchmarks/limits.py: the best sustained GEMM "
        "of numpy, torch and XLA on the model's own matmul shapes).", "",
        "| work | implementation | figure | speed vs HF | of limit |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['work']} | {r['who']} | {r['figure']} | {r['vs_hf']:.2f}x "
                     f"({r['range'][0]:.2f}-{r['range'][1]:.2f}) | {r['limit']:.0%} |")
    lines.append("")
    lines.append(f"![ratios to HF](ratios.png)" if chart else
                 "(No chart: matplotlib is not installed; `pip install matplotlib` draws "
                 "results/ratios.png.)")
    for name, result in results.items():
        lines += ["", f"## {name}", "", f"`{result['command']}` — exit {result['returncode']}, "
                  f"{result['seconds']:.0f} s", "", "```", result["stdout"].strip() or "(no output)",
                  "```"]
        if result["returncode"]:
            lines += ["", "stderr (tail):", "", "```", result["stderr_tail"].strip(), "```"]
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: str) -> str | None:
    """Horizontal bars of the speed ratios to HF; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in rows if not r["who"].startswith("HF")]
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(rows) + 1.2))
    labels = [f"{r['work']} — {r['who'].replace('bert4keras ', '')}" for r in rows]
    values = [r["vs_hf"] for r in rows]
    errors = [[v - r["range"][0] for v, r in zip(values, rows)],
              [r["range"][1] - v for v, r in zip(values, rows)]]
    ax.barh(labels, values, xerr=errors, color=["tab:green" if v >= 1 else "tab:red" for v in values])
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xlabel("speed relative to HF transformers (higher is faster)")
    ax.invert_yaxis()
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a smoke run")
    parser.add_argument("--only", nargs="+", help="run only these benchmarks")
    args = parser.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    machine = limits.machine()
    results = {}
    for name, argv in benchmarks(args.quick).items():
        if args.only and name not in args.only:
            continue
        results[name] = run(name, argv)
    machine["load_average_end"] = os.getloadavg()
    rows = summary_rows(results)
    drawn = chart(rows, os.path.join(RESULTS, "ratios.png"))
    limits.write_json(os.path.join(RESULTS, "latest.json"),
                      {"machine": machine, "summary": rows, "benchmarks": results})
    text = markdown(results, machine, rows, drawn)
    tmp = os.path.join(RESULTS, "latest.md.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(RESULTS, "latest.md"))
    print(text)
    failed = [name for name, r in results.items() if r["returncode"]]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
