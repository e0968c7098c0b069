"""WordPiece's rules as an HF `tokenizers` (Rust) pipeline: the fast path of `Tokenizer`.

It returns plain data per text: ids, tokens, offsets and the positions of the words the
vocab could not split. What such a word becomes ([UNK], the word itself, an error) is
the Tokenizer's decision, as is which texts it sends here (`supports`).
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from .base import _ASCII_PUNCTUATION, _CJK_RANGES, Offsets

_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


class FastEncoding(NamedTuple):
    """One text through the Rust pipeline, without start/end tokens."""

    ids: list[int]  # vocab ids; at the `unknown` positions an id that no vocab token has
    unknown: list[int]  # positions of words the vocab cannot split or that exceed word_maxlen
    tokens: list[str] | None  # when asked for (an unknown word's token is a placeholder)
    offsets: Offsets | None  # when asked for, or with tokens: each token's (start, end) character span


class FastWordPiece:
    """Tokenizer's rules as a Rust pipeline, for the texts it reproduces exactly."""

    # The Rust model's unknown token: it has spaces, so no word can match it, and its own
    # id, so unknown words are told apart from a vocab token sharing the [UNK] id.
    UNKNOWN = " unknown word "

    def __init__(self, token_dict: dict[str, int], lower: bool, word_maxlen: int):
        from tokenizers import Regex, models, normalizers, pre_tokenizers
        from tokenizers import Tokenizer as RustTokenizer

        tables = _tables()
        vocab = dict(token_dict)
        self.unknown_id = max(vocab.values(), default=-1) + 1
        vocab[self.UNKNOWN] = self.unknown_id
        rust = RustTokenizer(
            models.WordPiece(
                vocab,
                unk_token=self.UNKNOWN,
                continuing_subword_prefix="##",
                max_input_chars_per_word=word_maxlen,
            )
        )
        if lower:
            rust.normalizer = normalizers.Sequence(
                [normalizers.Lowercase(), normalizers.NFD(), normalizers.Replace(Regex(tables.drop_or_mn), "")]
            )
        else:
            rust.normalizer = normalizers.Replace(Regex(tables.drop), "")
        rust.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(tables.separate + "+"), "removed"),
                pre_tokenizers.Split(Regex(tables.isolate), "isolated"),
            ]
        )
        self.rust = rust
        # encode_batch_fast (tokenizers >= 0.21) skips the offsets we do not need
        self.encode_batch_fast = getattr(rust, "encode_batch_fast", rust.encode_batch)
        self.unsafe = tables.unsafe_lower if lower else tables.unsafe_cased
        self.unsafe_astral = tables.unsafe_lower_astral if lower else ([], [])

    def supports(self, text: str) -> bool:
        """Whether Rust tokenizes this text exactly as the rules do (else use the pure path)."""
        if self.unsafe.search(text) is not None:
            return False
        starts, ends = self.unsafe_astral
        for ch in _ASTRAL.findall(text) if starts else ():
            k = bisect.bisect_right(starts, ord(ch)) - 1
            if k >= 0 and ord(ch) <= ends[k]:
                return False
        return True

    def encode(self, texts: Sequence[str], tokens: bool = False, offsets: bool = False) -> list[FastEncoding]:
        """Encode texts (all `supports`ed), with the tokens and/or offsets asked for (tokens come
        with their offsets); ids alone take Rust's quickest route."""
        if not texts:
            return []
        offsets = offsets or tokens
        if len(texts) == 1:
            encodings = [self.rust.encode(texts[0], add_special_tokens=False)]
        elif offsets:
            encodings = self.rust.encode_batch(texts, add_special_tokens=False)
        else:
            encodings = self.encode_batch_fast(texts, add_special_tokens=False)
        unknown_id, results = self.unknown_id, []
        for encoding in encodings:
            ids = encoding.ids
            unknown = [k for k, i in enumerate(ids) if i == unknown_id] if unknown_id in ids else []
            results.append(
                FastEncoding(
                    ids,
                    unknown,
                    encoding.tokens if tokens else None,
                    encoding.offsets if offsets else None,
                )
            )
        return results


class _Tables(NamedTuple):
    """Character classes of bert4keras's rules, as regex classes for Rust and Python."""

    isolate: str  # punctuation and CJK: one token each
    separate: str  # spaces, plus whitespace kept by _tokenize that str.split() splits at
    drop: str  # removed: NUL, U+FFFD, Cc, Cf
    drop_or_mn: str  # drop plus non-spacing marks (stripped accents)
    unsafe_cased: re.Pattern  # BMP chars the Rust path cannot take: lone surrogates
    unsafe_lower: re.Pattern  # plus BMP chars whose lowercasing/NFD in Rust may differ from Python's
    unsafe_lower_astral: tuple[list[int], list[int]]  # the same above U+FFFF, as (starts, ends)


def _class(codes: Iterable[int], python: bool = False) -> str:
    """A regex character class of code points, as ranges (Oniguruma or Python syntax)."""
    codes = sorted(codes)
    escape = (lambda c: "\\U%08x" % c) if python else (lambda c: "\\x{%X}" % c)
    parts, i = [], 0
    while i < len(codes):
        j = i
        while j + 1 < len(codes) and codes[j + 1] == codes[j] + 1:
            j += 1
        parts.append(escape(codes[i]) if i == j else escape(codes[i]) + "-" + escape(codes[j]))
        i = j + 1
    return "[" + "".join(parts) + "]"


@functools.lru_cache(maxsize=None)
def _tables() -> _Tables:
    """Scan every code point once (about 0.3 s) to turn Tokenizer's rules into character classes."""
    import numpy as np

    everything = "".join(map(chr, range(0x110000)))
    names = sorted({unicodedata.category(chr(c)) for c in range(0x110000)})
    number = {name: i for i, name in enumerate(names)}
    cats = np.fromiter(map(number.__getitem__, map(unicodedata.category, everything)), np.uint8, 0x110000)

    def category(*wanted: str) -> np.ndarray:
        return np.isin(cats, [number[n] for n in names if n in wanted or n[0] in wanted])

    def ranges(*spans: tuple[int, int]) -> np.ndarray:
        mask = np.zeros(0x110000, bool)
        for a, b in spans:
            mask[a : b + 1] = True
        return mask

    isolate = category("P") | ranges(*_ASCII_PUNCTUATION) | ranges(*_CJK_RANGES)
    space = (category("Zs") | ranges((9, 10), (13, 13), (32, 32))) & ~isolate
    drop = (category("Cc", "Cf") | ranges((0, 0), (0xFFFD, 0xFFFD))) & ~isolate & ~space
    splits = np.zeros(0x110000, bool)
    splits[[m.start() for m in re.finditer(r"\s", everything)]] = True
    separate = space | (splits & ~isolate & ~drop)
    # Rust lowercases with a newer Unicode than Python's (unassigned here, cased there),
    # its NFD tables may lag Python's (characters new since Unicode 3.2 that decompose),
    # a non-Mn mark with a combining class can be reordered, and it has no final sigma.
    newer = [
        c
        for c in np.flatnonzero(~category("Cn", "Co", "Cs")).tolist()
        if unicodedata.decomposition(chr(c))[:1] not in ("", "<")
        and unicodedata.ucd_3_2_0.category(chr(c)) == "Cn"
    ]
    reordered = [
        c for c in np.flatnonzero(category("Mc", "Me")).tolist() if unicodedata.combining(chr(c))
    ]
    unsafe_lower = category("Cn", "Cs") | ranges((0x03A3, 0x03A3))
    unsafe_lower[newer + reordered] = True

    def codes(mask: np.ndarray) -> list[int]:
        return np.flatnonzero(mask).tolist()

    # Python's re scans a class with astral ranges linearly (slow); BMP-only classes are a
    # table lookup, so astral chars are checked by bisection instead.
    astral = np.flatnonzero(unsafe_lower[0x10000:]) + 0x10000
    breaks = np.flatnonzero(np.diff(astral) != 1)
    starts = np.concatenate([astral[:1], astral[breaks + 1]]).tolist()
    ends = np.concatenate([astral[breaks], astral[-1:]]).tolist()

    return _Tables(
        isolate=_class(codes(isolate)),
        separate=_class(codes(separate)),
        drop=_class(codes(drop)),
        drop_or_mn=_class(codes(drop | category("Mn"))),
        unsafe_cased=re.compile(_class(range(0xD800, 0xE000), python=True)),
        unsafe_lower=re.compile(_class(codes(unsafe_lower[:0x10000]), python=True)),
        unsafe_lower_astral=(starts, ends),
    )
