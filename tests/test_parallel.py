"""parallel_apply: bert4keras semantics, every start method, errors instead of hangs."""

import math
import os
import random
import signal
import time
from collections import Counter

import numpy as np
import pytest

from bert4keras._parallel import count_tokens, parallel_apply, parallel_apply_generator

# JAX (imported by other test modules) warns on every fork; our workers never touch it.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")


@pytest.fixture(autouse=True)
def no_hang():
    """Fail a test that hangs (the bert4keras failure mode) instead of blocking the suite."""
    def alarm(signum, frame):
        raise TimeoutError("parallel_apply hung")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("dummy", [False, True])
def test_ordered_unordered_and_callback(dummy):
    data = list(range(1000))
    expected = [x * x for x in data]
    square = lambda x: x * x  # noqa: E731 (closures work with fork and threads)
    assert parallel_apply(square, data, 4, 16, dummy=dummy, unordered=False) == expected
    assert sorted(parallel_apply(square, iter(data), 4, 16, dummy=dummy)) == expected
    indices = [i for i, _ in parallel_apply_generator(square, data, 3, 8, dummy=dummy)]
    assert sorted(indices) == data
    seen = []
    assert parallel_apply(square, data, 2, 4, callback=seen.append, dummy=dummy) is None
    assert sorted(seen) == expected


def test_random_seeds():
    n = 50
    draws = parallel_apply(lambda _: np.random.rand(), range(n), 1, 4, random_seeds=[123], unordered=False)
    assert draws == list(np.random.RandomState(123).rand(n))

    def first_draw(_):
        time.sleep(0.01)  # let both workers take items
        return os.getpid(), np.random.rand()

    np.random.seed(0)
    parent = np.random.RandomState(0).rand()
    inherited = dict(parallel_apply(first_draw, range(20), 2, 2, random_seeds=False)[::-1])
    assert len(inherited) == 2 and set(inherited.values()) == {parent}  # forked RNG state, no reseed
    fresh = dict(parallel_apply(first_draw, range(20), 2, 2, random_seeds=True)[::-1])
    assert any(value != parent for value in fresh.values())


def fail_on_50(x):
    if x == 50:
        raise KeyError(f"bad item {x}")
    return x


@pytest.mark.parametrize("dummy", [False, True])
def test_exception_in_func_propagates(dummy):
    start = time.time()
    with pytest.raises(KeyError, match="bad item 50") as info:
        parallel_apply(fail_on_50, range(200), 2, 4, dummy=dummy)
    assert "fail_on_50" in str(info.value.__cause__)  # the worker's traceback
    assert time.time() - start < 10


def test_dead_worker_is_reported():
    with pytest.raises(RuntimeError, match="worker process died \\(exit code 3\\)"):
        parallel_apply(lambda x: os._exit(3) if x == 5 else x, range(20), 2, 2)


def test_spawn_start_method():
    assert parallel_apply(math.sqrt, range(10), 2, 2, random_seeds=False, unordered=False, start_method="spawn") == [
        math.sqrt(x) for x in range(10)
    ]
    with pytest.raises(ValueError, match="cannot be sent to 'spawn' worker processes.*module-level function"):
        parallel_apply(lambda x: x, range(3), 1, 1, start_method="spawn")


def test_tokenize_a_corpus_on_spawn_workers(minilm_dir):
    from bert4keras.tokenizers import Tokenizer

    tokenizer = Tokenizer(os.path.join(minilm_dir, "vocab.txt"), do_lower_case=True)
    tokenizer.encode("warm")  # the Rust pipeline is dropped when pickled, rebuilt in the worker
    texts = [f"Sentence number {i}, tokenized elsewhere." for i in range(40)]
    results = parallel_apply(tokenizer.encode, texts, 2, 8, random_seeds=False, unordered=False, start_method="spawn")
    assert results == [tokenizer.encode(text) for text in texts]


def test_edge_cases():
    assert parallel_apply(abs, [], 2, 1) == []
    assert parallel_apply(abs, [], 2, 1, dummy=True) == []
    assert parallel_apply(abs, range(-50, 0), 3, 1, unordered=False) == list(range(50, 0, -1))
    generator = parallel_apply_generator(abs, (x for x in range(10**6)), 2, 4)
    first = [next(generator) for _ in range(5)]  # an endless-ish input is consumed lazily
    generator.close()
    assert len(first) == 5
    with pytest.raises(ValueError, match="workers must be >= 1"):
        parallel_apply(abs, [1], 0, 1)


def test_count_tokens_batch_then_merge():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(50000)]
    texts = [" ".join(rng.choices(vocab, k=rng.randint(1, 40))) for _ in range(5000)]
    naive = Counter()
    for text in texts:
        for token in text.split():
            naive[token] = naive.get(token, 0) + 1
    assert count_tokens(texts, str.split, workers=4, batch_size=1000) == naive
    assert count_tokens(iter(texts), str.split, workers=1, batch_size=1000) == naive
    assert count_tokens([], str.split, workers=2) == Counter()
