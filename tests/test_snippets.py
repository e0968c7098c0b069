"""snippets: the text and utility helpers of bert4keras 0.11.5, against its semantics."""

import builtins
import itertools
import json

import numpy as np
import pytest

from bert4keras import snippets
from bert4keras.snippets import (
    DataGenerator, Hook, delete_arguments, insert_arguments, is_py2, longest_common_subsequence,
    longest_common_substring, lowercase_and_normalize, open, softmax,
)


def test_uniout_is_importable_and_does_nothing():
    from bert4keras.snippets import uniout

    assert uniout.__name__ == "uniout" and not [n for n in vars(uniout) if not n.startswith("__")]
    assert Hook(snippets).uniout is uniout
    assert Hook(snippets).to_array is snippets.to_array
    assert is_py2 is False


@pytest.mark.parametrize("source, target, substring, subsequence", [  # values from 0.11.5
    ("abcde", "xbcdy", (3, (1, 4, 1, 4)), (3, [(1, 1), (2, 2), (3, 3)])),
    ("ababc", "babca", (4, (1, 5, 0, 4)), (4, [(1, 0), (2, 1), (3, 2), (4, 3)])),
    ("abc", "xyz", (0, (0, 0, 0, 0)), (0, [])),
    ("", "abc", (0, (0, 0, 0, 0)), (0, [])),
    ("aaa", "aa", (2, (0, 2, 0, 2)), (2, [(1, 0), (2, 1)])),
    ("我爱北京天安门", "北京的天安门", (3, (4, 7, 3, 6)), (5, [(2, 0), (3, 1), (4, 3), (5, 4), (6, 5)])),
])
def test_longest_common_substring_and_subsequence(source, target, substring, subsequence):
    assert longest_common_substring(source, target) == substring
    assert longest_common_subsequence(source, target) == subsequence
    length, (i0, i1, j0, j1) = substring
    assert source[i0:i1] == target[j0:j1] and i1 - i0 == length
    assert all(source[i] == target[j] for i, j in subsequence[1])


def test_longest_common_subsequence_is_optimal_on_random_lists():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b = list(rng.integers(0, 3, rng.integers(0, 7))), list(rng.integers(0, 3, rng.integers(0, 7)))
        length, mapping = longest_common_subsequence(a, b)
        best = next(r for r in range(len(a), -1, -1)  # brute force over subsequences of a
                    if any(_is_subsequence([a[k] for k in idx], b)
                           for idx in itertools.combinations(range(len(a)), r)))
        assert length == best == len(mapping)
        assert [i for i, _ in mapping] == sorted({i for i, _ in mapping})
        assert [j for _, j in mapping] == sorted({j for _, j in mapping})


def _is_subsequence(sub, seq):
    it = iter(seq)
    return all(any(x == y for y in it) for x in sub)


def test_lowercase_and_normalize():
    assert lowercase_and_normalize("Café NAÏVE Ångström") == "cafe naive angstrom"
    assert lowercase_and_normalize("中文ABC") == "中文abc"
    assert lowercase_and_normalize("") == ""


def test_softmax_numpy():
    x = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 1000.0]])
    p = softmax(x)
    np.testing.assert_allclose(p[0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())
    np.testing.assert_allclose(p[1], [1 / 3] * 3)
    np.testing.assert_allclose(softmax(x, axis=0).sum(axis=0), 1.0)


def test_insert_and_delete_arguments():
    class Base:
        @insert_arguments(alpha=1, beta="b")
        def __init__(self, x, **kwargs):
            self.x, self.rest = x, kwargs

    obj = Base(3, alpha=5, other=1)
    assert (obj.x, obj.alpha, obj.beta, obj.rest) == (3, 5, "b", {"other": 1})

    class NoDropout(Base):
        @delete_arguments("dropout")
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

    assert NoDropout(1).alpha == 1
    with pytest.raises(TypeError, match="NoDropout got an unexpected keyword argument 'dropout'"):
        NoDropout(1, dropout=0.1)


def _write(path, text, encoding="utf-8"):
    with builtins.open(path, "w", encoding=encoding) as f:
        f.write(text)


def test_open_reads_iterates_and_indexes(tmp_path, capsys):
    path = str(tmp_path / "corpus.txt")
    lines = ["第一行\n", "second line\n", "\n", "最后一行"]
    _write(path, "".join(lines))
    with open(path, encoding="utf-8") as f:
        assert list(f) == lines
    with open(path, encoding="utf-8") as f:
        assert f.next() == lines[0] and next(f) == lines[1]
    with open(path, encoding="utf-8") as f:
        assert f.readline() == lines[0] and f.readlines() == lines[1:]
    with open(path, encoding="utf-8", indexable=True) as f:
        assert len(f) == 4
        assert [f[i] for i in (3, 0, 2, -3)] == [lines[3], lines[0], lines[2], lines[1]]
        with pytest.raises(IndexError):
            f[4]
    assert "creating indexes" in capsys.readouterr().out
    index = str(tmp_path / "corpus.index.json")
    with open(path, encoding="utf-8", indexable=index) as f:
        assert f[1] == lines[1]
    with builtins.open(index, encoding="utf-8") as f:
        offsets = json.load(f)
    assert len(offsets) == 4 and offsets[0] == 0
    capsys.readouterr()
    with open(path, encoding="utf-8", indexable=index) as f:  # reuses the saved index
        assert f[3] == lines[3]
    assert "creating indexes" not in capsys.readouterr().out
    with open(path, encoding="utf-8") as f:
        with pytest.raises(TypeError, match="indexable=True"):
            f[0]


def test_open_errors_and_binary_mode(tmp_path):
    path = str(tmp_path / "latin.txt")
    with builtins.open(path, "wb") as f:
        f.write("naïve\nx\n".encode("latin-1"))
    with open(path, encoding="utf-8") as f:
        with pytest.raises(UnicodeDecodeError):
            f.read()
    with open(path, encoding="utf-8", errors="ignore") as f:
        assert f.read() == "nave\nx\n"
    with open(path, "rb") as f:  # no encoding: bytes, as the built-in open
        assert f.readline() == "naïve\n".encode("latin-1")
    with open(path, "rb", encoding="latin-1", indexable=True) as f:  # encoding in binary mode decodes
        assert f[0] == "naïve\n" and len(f) == 2
    out = str(tmp_path / "out.txt")
    with open(out, "w", encoding="utf-8") as f:
        f.write("中文\n")
    with open(out, encoding="utf-8") as f:
        assert f.read() == "中文\n"


def test_to_dataset_without_tensorflow_names_the_alternatives():
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        class Gen(DataGenerator):
            def __iter__(self, random=False):
                yield from ([d] for d in self.data)

        with pytest.raises(ImportError, match="PyDataset"):
            Gen([1, 2, 3], batch_size=2).to_dataset(types="int32", shapes=())
    else:
        pytest.skip("TensorFlow is installed; the tf.data path is tested instead")


def test_to_dataset_with_tensorflow():
    tf = pytest.importorskip("tensorflow")

    class Gen(DataGenerator):
        def __iter__(self, random=False):
            for d in self.data:
                yield [d, d * 2]

    dataset = Gen(list(range(4)), batch_size=2).to_dataset(("int32", "int32"), ((), ()), names=["a", "b"])
    batch = next(iter(dataset))
    assert set(batch) == {"a", "b"} and batch["a"].shape == (2,)
    assert tf.reduce_all(batch["b"] == 2 * batch["a"])
