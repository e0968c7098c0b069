"""Generation speed: this library's cached engine against HF ``generate`` and the uncached
``AutoRegressiveDecoder``, side by side in one run (paired rounds, medians).

* GPT-2-small shape (random weights, vocab 50257): prompt 32 + 64 new tokens, greedy, at
  batch 1 and 8, against HF transformers' ``generate`` (PyTorch, KV cache), plus the
  memory-bandwidth limit: the weights' bytes per token over the best streaming
  matrix-vector rate measured in the same run.
* UniLM beam search (beam 4, BERT-base shape, source 64, answer 32): engine against the
  uncached decoder.
* The first call's compile time.

Usage: ``python benchmarks/generate.py [--rounds 3]``. Runs the engine on the backend in
``KERAS_BACKEND`` (default jax); ``--also-torch`` repeats the GPT-2 figures in a PyTorch
subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from bert4keras.generation import AutoRegressiveDecoder  # noqa: E402
from bert4keras.models import build_transformer_model  # noqa: E402

PROMPT, NEW = 32, 64
SOURCE, ANSWER, BEAMS = 64, 32, 4


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bandwidth_gbs(rounds: int) -> float:
    """Best streaming rate of a float32 matrix-vector product over a 256 MB matrix, GB/s."""
    a = np.random.default_rng(0).standard_normal((16384, 4096), dtype=np.float32)
    x = np.ones(4096, np.float32)
    best = min(timed(lambda: a @ x) for _ in range(max(rounds * 3, 5)))
    return a.nbytes / best / 1e9


def gpt2_pair(rounds: int) -> dict:
    keras.utils.set_random_seed(0)
    ours = build_transformer_model(model="gpt2", vocab_size=50257, hidden_size=768,
                                   num_hidden_layers=12, num_attention_heads=12,
                                   intermediate_size=3072, max_position=1024,
                                   final_activation="linear")
    params = sum(int(np.prod(w.shape)) for w in ours.weights)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    results = {"params": params}
    rng = np.random.default_rng(0)
    for batch in (1, 8):
        prompts = rng.integers(1, 50257, (batch, PROMPT)).tolist()
        compile_s = timed(lambda: ours.generate(prompts, NEW))
        ours_t, hf_t = [], []
        for _ in range(rounds):
            ours_t.append(timed(lambda: ours.generate(prompts, NEW)))
            with torch.no_grad():
                ids = torch.tensor(prompts)
                hf_t.append(timed(lambda: hf.generate(
                    ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW,
                    min_new_tokens=NEW, do_sample=False, pad_token_id=0)))
        row = {"engine_s": statistics.median(ours_t), "first_call_s": compile_s,
               "compile_s": compile_s - statistics.median(ours_t),
               "hf_s": statistics.median(hf_t)}
        row["speedup_vs_hf"] = row["hf_s"] / row["engine_s"]
        results[f"batch{batch}"] = row
    return results


class UniLMDecoder(AutoRegressiveDecoder):
    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs, output_ids, states):
        token_ids, segment_ids = inputs
        token_ids = np.concatenate([token_ids, output_ids], 1)
        segment_ids = np.concatenate([segment_ids, np.ones_like(output_ids)], 1)
        return self.last_token(self.model).predict([token_ids, segment_ids])


def unilm_pair(rounds: int) -> dict:
    keras.utils.set_random_seed(0)
    model = build_transformer_model(model="bert", application="unilm", with_mlm=True,
                                    vocab_size=21128, hidden_size=768, num_hidden_layers=12,
                                    num_attention_heads=12, intermediate_size=3072,
                                    max_position=512)
    source = np.random.default_rng(0).integers(1, 21128, SOURCE).tolist()
    decoder = UniLMDecoder(model, start_id=None, end_id=None, maxlen=ANSWER)
    compile_engine = timed(lambda: model.generate([source], ANSWER, num_beams=BEAMS))
    compile_decoder = timed(lambda: decoder.beam_search([source, [0] * SOURCE], topk=BEAMS))
    engine_t, decoder_t = [], []
    for _ in range(rounds):
        engine_t.append(timed(lambda: model.generate([source], ANSWER, num_beams=BEAMS)))
        decoder_t.append(timed(lambda: decoder.beam_search([source, [0] * SOURCE], topk=BEAMS)))
    engine, uncached = statistics.median(engine_t), statistics.median(decoder_t)
    return {"engine_s": engine, "uncached_s": uncached, "speedup": uncached / engine,
            "engine_first_call_s": compile_engine, "uncached_first_call_s": compile_decoder}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gpt2-only", action="store_true", help="skip the UniLM comparison")
    parser.add_argument("--also-torch", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    report = {"backend": keras.backend.backend(), "bandwidth_GBs": bandwidth_gbs(args.rounds)}
    report["gpt2"] = gpt2_pair(args.rounds)
    weight_bytes = report["gpt2"]["params"] * 4
    for batch in (1, 8):
        row = report["gpt2"][f"batch{batch}"]
        row["ms_per_step"] = 1e3 * row["engine_s"] / NEW
        row["bandwidth_limit_ms_per_step"] = 1e3 * weight_bytes / (report["bandwidth_GBs"] * 1e9)
        row["fraction_of_bandwidth_limit"] = row["bandwidth_limit_ms_per_step"] / row["ms_per_step"]
    if not args.gpt2_only:
        report["unilm_beam4"] = unilm_pair(args.rounds)
    print(json.dumps(report, indent=2))
    if args.also_torch:
        env = {**os.environ, "KERAS_BACKEND": "torch"}
        subprocess.run([sys.executable, __file__, "--rounds", str(args.rounds), "--gpt2-only"],
                       env=env, check=True)


if __name__ == "__main__":
    main()
