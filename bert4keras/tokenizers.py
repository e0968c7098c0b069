"""Tokenizers with bert4keras 0.11.5's API: BERT WordPiece, SentencePiece and GPT-2 byte-level BPE.

`Tokenizer` keeps bert4keras's pure-Python rules as the reference and, when the
HF `tokenizers` package is installed, runs the same rules in Rust (the "fast
path"); both give identical tokens, ids and offsets (see docs/tokenizers.md).
"""

from __future__ import annotations

import base64
import bisect
import functools
import importlib.util
import json
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

__all__ = [
    "BPETokenizer",
    "SpTokenizer",
    "Tokenizer",
    "TokenizerBase",
    "load_vocab",
    "lowercase_and_normalize",
    "save_vocab",
    "truncate_sequences",
]

Offsets = list[tuple[int, int]]

# ---------------------------------------------------------------------------
# Vocabulary files and small helpers
# ---------------------------------------------------------------------------


def _read_lines(path: str, encoding: str, what: str) -> list[str]:
    """All lines of a text file; a decoding error names the file, the encoding and the byte."""
    try:
        with open(path, encoding=encoding) as reader:
            return reader.readlines()
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{what} {path!r} is not valid {encoding} text (byte {e.start}: {e.reason})"
        ) from e


def load_vocab(
    dict_path: str,
    encoding: str = "utf-8",
    simplified: bool = False,
    startswith: Sequence[str] | None = None,
) -> dict[str, int] | tuple[dict[str, int], list[int]]:
    """Read a BERT vocab file (first field of each line) into a token->id dict.

    With `simplified=True`, drop tokens that WordPiece can never produce and return
    `(new_token_dict, keep_tokens)`, keeping the `startswith` tokens first.
    """
    token_dict: dict[str, int] = {}
    for line in _read_lines(dict_path, encoding, "vocab file"):
        fields = line.split()
        # A repeated token takes the next id, exactly as bert4keras did.
        token_dict[fields[0] if fields else line.strip()] = len(token_dict)
    if not simplified:
        return token_dict

    new_token_dict: dict[str, int] = {}
    keep_tokens: list[int] = []
    for token in startswith or []:
        if token not in token_dict:
            raise ValueError(f"startswith token {token!r} is not in the vocab file {dict_path!r}")
        new_token_dict[token] = len(new_token_dict)
        keep_tokens.append(token_dict[token])
    for token, index in sorted(token_dict.items(), key=lambda item: item[1]):
        if token not in new_token_dict and not Tokenizer._is_redundant(token):
            new_token_dict[token] = len(new_token_dict)
            keep_tokens.append(index)
    return new_token_dict, keep_tokens


def save_vocab(dict_path: str, token_dict: dict[str, int], encoding: str = "utf-8") -> None:
    """Write a token->id dict as a vocab file, one token per line in id order."""
    with open(dict_path, "w", encoding=encoding) as writer:
        for token, _ in sorted(token_dict.items(), key=lambda item: item[1]):
            writer.write(token + "\n")


def truncate_sequences(maxlen: int, indices: int | Sequence[int], *sequences: list | None) -> list[list]:
    """Pop items (at `indices`) from the longest sequence until the total length is <= maxlen.

    In place, bert4keras semantics: empty/None sequences are dropped first, ties go to
    the first longest, and the non-empty sequences are returned.
    """
    sequences = [s for s in sequences if s]
    if not isinstance(indices, (list, tuple)):
        indices = [indices] * len(sequences)
    while True:
        lengths = [len(s) for s in sequences]
        excess = sum(lengths) - maxlen
        if excess <= 0:
            return sequences
        i = lengths.index(max(lengths))
        # Sequence i stays the (first) longest while it is > every earlier one and >=
        # every later one: do those pops as one slice deletion.
        floor = max([lengths[j] + 1 for j in range(i)] + lengths[i + 1 :] + [0])
        pops = min(excess, lengths[i] - floor + 1)
        seq, index, n = sequences[i], indices[i], lengths[i]
        first = index if index >= 0 else n + index - pops + 1
        if first < 0 or (index >= 0 and index + pops > n):
            seq.pop(index)  # out of range: raise IndexError exactly where bert4keras does
        else:
            del seq[first : first + pops]


_SEEN_CHARS: set[str] = set()
_DELETE_MN: dict[int, None] = {}  # str.translate table deleting the Mn chars seen so far


def lowercase_and_normalize(text: str) -> str:
    """Lowercase, decompose (NFD) and drop non-spacing marks (category Mn)."""
    text = unicodedata.normalize("NFD", text.lower())
    new = set(text).difference(_SEEN_CHARS)
    if new:
        _DELETE_MN.update((ord(ch), None) for ch in new if unicodedata.category(ch) == "Mn")
        _SEEN_CHARS.update(new)
    return text.translate(_DELETE_MN)


def _spans(mapping: list[list[int]]) -> Offsets:
    """(start, end) character spans of rematch() lists; (0, 0) for special tokens."""
    return [(m[0], m[-1] + 1) if m else (0, 0) for m in mapping]


# ---------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------


class TokenizerBase:
    """Shared tokenize/encode logic: special tokens, truncation, segment ids.

    Subclasses with a Rust path (HF `tokenizers`) set `fast` and override `_content`.
    """

    fast = False
    _rust: Any = None

    def __init__(
        self,
        token_start: str | None = "[CLS]",
        token_end: str | None = "[SEP]",
        pre_tokenize: Callable[[str], Iterable[str]] | None = None,
        token_translate: dict[str, str] | None = None,
    ):
        """pre_tokenize: text -> words, tokenized further unless in the vocab;
        token_translate: token -> replacement token, applied after tokenization."""
        self._token_pad = "[PAD]"
        self._token_unk = "[UNK]"
        self._token_mask = "[MASK]"
        self._token_start = token_start
        self._token_end = token_end
        self._pre_tokenize = pre_tokenize
        self._token_translate = token_translate or {}
        self._token_translate_inv = {v: k for k, v in self._token_translate.items()}

    @property
    def vocab_size(self) -> int:
        """Number of ids."""
        return self._vocab_size

    def _special_count(self, pair: bool, pattern: str = "S*E*E") -> int:
        """How many special tokens encode adds for one text or a pair."""
        start, end = int(self._token_start is not None), int(self._token_end is not None)
        if not pair:
            return start + end
        return start + 2 * end if pattern == "S*E*E" else 2 * (start + end)

    def _check_maxlen(self, maxlen: int | None, pair: bool, pattern: str = "S*E*E") -> None:
        """A maxlen that cannot hold the special tokens is an error, not a silent mangle."""
        needed = self._special_count(pair, pattern)
        if maxlen is not None and maxlen < needed:
            specials = [t for t in (self._token_start, self._token_end) if t is not None]
            raise ValueError(
                f"maxlen={maxlen} is smaller than the {needed} special tokens "
                f"({', '.join(specials)}) that {'a text pair' if pair else 'a text'} needs"
            )

    def _choose_fast(self, fast: bool | None) -> bool:
        """Resolve fast=None/True/False against what the configuration allows."""
        reason = self._fast_unsupported_reason()
        if fast and reason:
            raise ValueError(f"fast=True is not possible: {reason}")
        return reason is None if fast is None else bool(fast)

    def _fast_unsupported_reason(self) -> str | None:
        """Why the Rust path cannot reproduce this configuration, or None."""
        if self._pre_tokenize is not None:
            return "a pre_tokenize function is set"
        if self._token_translate:
            return "token_translate is set"
        if importlib.util.find_spec("tokenizers") is None:
            return "the 'tokenizers' package is not installed (pip install tokenizers)"
        return None

    def __getstate__(self) -> dict:
        """Picklable (e.g. for spawn workers): a Rust pipeline is rebuilt on first use."""
        return {**self.__dict__, "_rust": None}

    def tokenize(self, text: str, maxlen: int | None = None) -> list[str]:
        """Tokens of `text` with the start/end tokens; truncated (before the end token) to maxlen."""
        if self.fast:
            tokens = self._content([text], tokens=True)[0][0]
        else:
            tokens = self._tokenize(text)
            if self._token_translate:
                tokens = [self._token_translate.get(token) or token for token in tokens]
        return self._add_specials(tokens, maxlen)

    def _add_specials(self, tokens: list[str], maxlen: int | None) -> list[str]:
        """Wrap content tokens in the start/end tokens and truncate before the end token."""
        if self._token_start is not None:
            tokens.insert(0, self._token_start)
        if self._token_end is not None:
            tokens.append(self._token_end)
        if maxlen is not None:
            self._check_maxlen(maxlen, pair=False)
            truncate_sequences(maxlen, -int(self._token_end is not None) - 1, tokens)
        return tokens

    def token_to_id(self, token: str) -> int:
        """Id of a token."""
        raise NotImplementedError

    def tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        """Ids of tokens."""
        return [self.token_to_id(token) for token in tokens]

    def id_to_token(self, i: int) -> str:
        """Token of an id."""
        raise NotImplementedError

    def ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ids."""
        return [self.id_to_token(i) for i in ids]

    def _pack(
        self,
        first: list,
        second: list | None,
        maxlen: int | None,
        pattern: str,
        truncate_from: str | int,
    ) -> tuple[list, list | None]:
        """Truncate a (pair of) unit list(s) that already carry start/end units, the bert4keras way.

        Units are tokens, ids or (id, span) pairs: only their positions matter.
        """
        if maxlen is not None:
            if truncate_from == "right":
                index = -int(self._token_end is not None) - 1
            elif truncate_from == "left":
                index = int(self._token_start is not None)
            else:
                index = truncate_from
            if second is not None and pattern == "S*E*E":
                maxlen += 1  # the second text's start token is counted, then dropped
            truncate_sequences(maxlen, index, first, second)
        if second is not None and pattern == "S*E*E":
            second = second[int(bool(self._token_start)) :]
        return first, second

    def encode(
        self,
        first_text: str | list[str],
        second_text: str | list[str] | None = None,
        maxlen: int | None = None,
        pattern: str = "S*E*E",
        truncate_from: str | int = "right",
    ) -> tuple[list[int], list[int]]:
        """(token_ids, segment_ids) of a text or pair; texts may be given as token lists.

        pattern 'S*E*E' joins a pair as [CLS] a [SEP] b [SEP]; any other keeps b's start token.
        """
        if self.fast and isinstance(first_text, str) and isinstance(second_text, (str, type(None))):
            seconds = None if second_text is None else [second_text]
            ids, segments = self.encode_batch([first_text], seconds, maxlen, pattern, truncate_from)
            return ids[0], segments[0]
        if isinstance(first_text, str):
            self._check_maxlen(maxlen, second_text is not None, pattern)
            first = self.tokenize(first_text)
        else:
            first = first_text
        second = self.tokenize(second_text) if isinstance(second_text, str) else second_text
        first, second = self._pack(first, second, maxlen, pattern, truncate_from)
        token_ids = self.tokens_to_ids(first)
        segment_ids = [0] * len(token_ids)
        if second is not None:
            second_ids = self.tokens_to_ids(second)
            token_ids.extend(second_ids)
            segment_ids.extend([1] * len(second_ids))
        return token_ids, segment_ids

    def encode_batch(
        self,
        first_texts: Sequence[str],
        second_texts: Sequence[str] | None = None,
        maxlen: int | None = None,
        pattern: str = "S*E*E",
        truncate_from: str | int = "right",
        return_offsets: bool = False,
    ) -> tuple[list[list], ...]:
        """encode() over a batch: (batch_token_ids, batch_segment_ids[, batch_offsets]).

        Offsets are (start, end) character spans into the source text, (0, 0) for
        start/end tokens; in a pair, the second text's spans index the second text.
        """
        if isinstance(first_texts, str):
            raise TypeError("encode_batch expects a list of texts, got a single string; use encode()")
        if second_texts is not None and len(second_texts) != len(first_texts):
            raise ValueError(
                f"encode_batch got {len(first_texts)} first texts but {len(second_texts)} second texts"
            )
        self._check_maxlen(maxlen, second_texts is not None, pattern)
        if second_texts is None and maxlen is None and not return_offsets:  # nothing to truncate
            head = [] if self._token_start is None else [self._token_start_id]
            tail = [] if self._token_end is None else [self._token_end_id]
            batch_ids = [head + ids + tail for ids, _ in self._content(first_texts)]
            return batch_ids, [[0] * len(ids) for ids in batch_ids]
        firsts = self._units(self._content(first_texts, offsets=return_offsets), return_offsets)
        if second_texts is None:
            seconds = [None] * len(firsts)
        else:
            seconds = self._units(self._content(second_texts, offsets=return_offsets), return_offsets)
        batch_ids, batch_segments, batch_offsets = [], [], []
        for first, second in zip(firsts, seconds):
            first, second = self._pack(first, second, maxlen, pattern, truncate_from)
            units = first if second is None else first + second
            batch_segments.append([0] * len(first) + ([] if second is None else [1] * len(second)))
            if return_offsets:
                batch_ids.append([unit[0] for unit in units])
                batch_offsets.append([unit[1] for unit in units])
            else:
                batch_ids.append(units)
        if return_offsets:
            return batch_ids, batch_segments, batch_offsets
        return batch_ids, batch_segments

    def _content(self, texts: Sequence[str], tokens: bool = False, offsets: bool = False) -> list[tuple]:
        """Per text: (tokens if `tokens` else ids, spans if `offsets` else None), no start/end tokens."""
        head, tail = int(self._token_start is not None), int(self._token_end is not None)
        results = []
        for text in texts:
            pieces = self.tokenize(text)
            pieces = pieces[head : len(pieces) - tail]
            spans = self._token_spans(text, pieces) if offsets else None
            results.append((pieces if tokens else self.tokens_to_ids(pieces), spans))
        return results

    def _token_spans(self, text: str, tokens: list[str]) -> Offsets:
        """(start, end) character span of each token in text."""
        raise NotImplementedError(f"{type(self).__name__} does not compute offsets")

    def _units(self, contents: list[tuple], with_offsets: bool) -> list[list]:
        """Content ids (or (id, span) pairs) wrapped in start/end units."""
        head, tail = [], []
        if self._token_start is not None:
            head = [(self._token_start_id, (0, 0)) if with_offsets else self._token_start_id]
        if self._token_end is not None:
            tail = [(self._token_end_id, (0, 0)) if with_offsets else self._token_end_id]
        if with_offsets:
            return [head + list(zip(ids, spans)) + tail for ids, spans in contents]
        return [head + ids + tail for ids, _ in contents]

    def decode(self, ids: Sequence[int]) -> str:
        """Readable text of ids."""
        raise NotImplementedError

    def _tokenize(self, text: str) -> list[str]:
        """Tokens of text, without start/end tokens."""
        raise NotImplementedError


# ---------------------------------------------------------------------------
# BERT WordPiece
# ---------------------------------------------------------------------------

_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
_ASCII_PUNCTUATION = ((33, 47), (58, 64), (91, 96), (123, 126))
_CJK_PUNCTUATION = (
    "\uff02\uff03\uff04\uff05\uff06\uff07\uff08\uff09\uff0a\uff0b\uff0c\uff0d\uff0f\uff1a\uff1b"
    "\uff1c\uff1d\uff1e\uff20\uff3b\uff3c\uff3d\uff3e\uff3f\uff40\uff5b\uff5c\uff5d\uff5e\uff5f"
    "\uff60\uff62\uff63\uff64\u3000\u3001\u3003\u3008\u3009\u300a\u300b\u300c\u300d\u300e\u300f"
    "\u3010\u3011\u3014\u3015\u3016\u3017\u3018\u3019\u301a\u301b\u301c\u301d\u301e\u301f\u3030"
    "\u303e\u303f\u2013\u2014\u2018\u2019\u201b\u201c\u201d\u201e\u201f\u2026\u2027\ufe4f\ufe51"
    "\ufe54\u00b7\uff01\uff1f\uff61\u3002"
)
_DECODE_GLUE = re.compile("(%s) " % "|".join(re.escape(p) for p in _CJK_PUNCTUATION + "+-/={(<["))

_ASTRAL = re.compile("[\U00010000-\U0010ffff]")

# How _tokenize treats a character (bert4keras checks the classes in this order).
_ISOLATE, _SEPARATE, _DROP, _KEEP = range(4)

# Tokenizer methods whose rules the fast path reproduces: a subclass overriding any of
# them gets the pure path.
_FAST_RULES = (
    "tokenize",
    "_tokenize",
    "_word_piece_tokenize",
    "token_to_id",
    "tokens_to_ids",
    "_is_space",
    "_is_punctuation",
    "_is_cjk_character",
    "_is_control",
    "_is_special",
    "stem",
)


class Tokenizer(TokenizerBase):
    """BERT's WordPiece tokenizer with bert4keras's rules.

    fast=None uses the Rust path of HF `tokenizers` when it is installed and the
    configuration allows (no pre_tokenize/token_translate hook, no overridden rule);
    fast=False forces the pure-Python reference; fast=True requires the Rust path.
    """

    def __init__(
        self,
        token_dict: str | os.PathLike | dict[str, int],
        do_lower_case: bool = False,
        word_maxlen: int = 200,
        fast: bool | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if isinstance(token_dict, (str, os.PathLike)):
            self._vocab_name = f"vocab file {os.fspath(token_dict)!r}"
            token_dict = load_vocab(os.fspath(token_dict))
        else:
            self._vocab_name = "token_dict"
        self._do_lower_case = do_lower_case
        self._token_dict = token_dict
        self._token_dict_inv = {v: k for k, v in token_dict.items()}
        self._vocab_size = len(token_dict)
        self._word_maxlen = word_maxlen
        self._longest_token = max(map(len, token_dict), default=0)
        for name in ("pad", "unk", "mask", "start", "end"):
            setattr(self, f"_token_{name}_id", token_dict.get(getattr(self, f"_token_{name}")))
        for name in ("start", "end"):
            token = getattr(self, f"_token_{name}")
            if token is not None and token not in token_dict:
                raise ValueError(
                    f"token_{name}={token!r} is not in the {self._vocab_name}; "
                    f"pass token_{name}=None or a token that the vocab has"
                )
        self._kind_cache: dict[str, int] = {}
        self._spacing: dict[int, str | None] = {}  # str.translate table of the classified chars
        self._char_cache: dict[str, str | None] = {}
        self.fast = self._choose_fast(fast)

    def _fast_unsupported_reason(self) -> str | None:
        """Why the Rust path cannot reproduce this configuration, or None."""
        overridden = [n for n in _FAST_RULES if getattr(type(self), n) is not getattr(Tokenizer, n)]
        if overridden:
            return f"{type(self).__name__} overrides {', '.join(overridden)}"
        if not isinstance(self._word_maxlen, int) or self._word_maxlen < 0:
            return f"word_maxlen={self._word_maxlen!r} is not a non-negative int"
        if not all(isinstance(i, int) and 0 <= i < 2**32 - 1 for i in self._token_dict.values()):
            return f"the {self._vocab_name} has ids that are not 32-bit non-negative ints"
        return super()._fast_unsupported_reason()

    @property
    def _fast_path(self) -> _FastWordPiece:
        """The Rust tokenizer, built on first use."""
        if self._rust is None:
            self._rust = _FastWordPiece(self._token_dict, self._do_lower_case, self._word_maxlen)
        return self._rust

    # -- ids ------------------------------------------------------------------

    def token_to_id(self, token: str) -> int:
        """Id of a token; out-of-vocabulary tokens get the [UNK] id."""
        index = self._token_dict.get(token, self._token_unk_id)
        if index is None:
            raise ValueError(self._missing_unk_message(token))
        return index

    def tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        """Ids of tokens (one dict lookup each unless token_to_id is overridden)."""
        if type(self).token_to_id is not Tokenizer.token_to_id:
            return super().tokens_to_ids(tokens)
        tokens = list(tokens)
        get, unk = self._token_dict.get, self._token_unk_id
        ids = [get(token, unk) for token in tokens]
        if unk is None and None in ids:
            raise ValueError(self._missing_unk_message(tokens[ids.index(None)]))
        return ids

    def _missing_unk_message(self, token: str) -> str:
        return f"{token!r} is not in the {self._vocab_name}, which has no {self._token_unk!r} token for it"

    def id_to_token(self, i: int) -> str:
        """Token of an id."""
        return self._token_dict_inv[i]

    def decode(self, ids: Sequence[int], tokens: list[str] | None = None) -> str:
        """Readable text: drop [xxx] tokens, glue ## pieces, CJK and punctuation, bert4keras-style."""
        tokens = tokens or self.ids_to_tokens(ids)
        tokens = [token for token in tokens if not self._is_special(token)]
        text = ""
        for i, token in enumerate(tokens):
            if token[:2] == "##":
                text += token[2:]
            elif len(token) == 1 and self._is_cjk_character(token):
                text += token
            elif len(token) == 1 and self._is_punctuation(token):
                text += token + " "
            elif i > 0 and text and self._is_cjk_character(text[-1]):
                text += token
            else:
                text += " " + token
        text = re.sub(" +", " ", text)
        text = re.sub("' (re|m|s|t|ve|d|ll) ", "'\\1 ", text)
        text = _DECODE_GLUE.sub("\\1", text)
        text = re.sub(r"(\d\.) (\d)", "\\1\\2", text)
        return text.strip()

    # -- pure-Python reference ------------------------------------------------

    def _char_kind(self, ch: str) -> int:
        """Class of a character for _tokenize, memoized (the rules are per character)."""
        kind = self._kind_cache.get(ch)
        if kind is None:
            if self._is_punctuation(ch) or self._is_cjk_character(ch):
                kind = _ISOLATE
            elif self._is_space(ch):
                kind = _SEPARATE
            elif ord(ch) == 0 or ord(ch) == 0xFFFD or self._is_control(ch):
                kind = _DROP
            else:
                kind = _KEEP
            if kind != _KEEP:  # before the cache entry: other threads trust the cache
                self._spacing[ord(ch)] = (" " + ch + " ", " ", None)[kind]
            self._kind_cache[ch] = kind
        return kind

    def _tokenize(self, text: str, pre_tokenize: bool = True) -> list[str]:
        """WordPiece tokens: (lowercase+strip accents), isolate punctuation/CJK, split, WordPiece."""
        if self._do_lower_case:
            text = lowercase_and_normalize(text)
        if pre_tokenize and self._pre_tokenize is not None:
            tokens = []
            for token in self._pre_tokenize(text):
                if token in self._token_dict:
                    tokens.append(token)
                else:
                    tokens.extend(self._tokenize(token, False))
            return tokens

        # Space out punctuation and CJK, turn spaces into ' ', drop controls: one
        # str.translate once every character of the text has been classified.
        for ch in set(text).difference(self._kind_cache):
            self._char_kind(ch)
        tokens = []
        # str.split() also splits at the few whitespace characters (U+2028...) kept above.
        for word in text.translate(self._spacing).split():
            tokens.extend(self._word_piece_tokenize(word))
        return tokens

    def _word_piece_tokenize(self, word: str) -> list[str]:
        """Greedy longest-match-first WordPiece; an unsplittable or too long word stays whole."""
        if len(word) > self._word_maxlen or word in self._token_dict:
            return [word]
        tokens, start = [], 0
        while start < len(word):
            # No vocab entry is longer than _longest_token, so longer candidates are skipped.
            end = min(len(word), start + self._longest_token)
            while end > start:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self._token_dict:
                    break
                end -= 1
            if start == end:
                return [word]
            tokens.append(sub)
            start = end
        return tokens

    @staticmethod
    def stem(token: str) -> str:
        """A token without its '##' prefix."""
        return token[2:] if token[:2] == "##" else token

    @staticmethod
    def _is_space(ch: str) -> bool:
        """Space, \\n, \\r, \\t or category Zs."""
        return ch in " \n\r\t" or unicodedata.category(ch) == "Zs"

    @staticmethod
    def _is_punctuation(ch: str) -> bool:
        """Non-alphanumeric printable ASCII or category P*."""
        code = ord(ch)
        return any(a <= code <= b for a, b in _ASCII_PUNCTUATION) or unicodedata.category(ch).startswith("P")

    @staticmethod
    def _cjk_punctuation() -> str:
        """Full-width and CJK punctuation that decode() glues to the next token."""
        return _CJK_PUNCTUATION

    @staticmethod
    def _is_cjk_character(ch: str) -> bool:
        """CJK Unified Ideographs (with extensions A-F) and compatibility ideographs."""
        code = ord(ch)
        return any(a <= code <= b for a, b in _CJK_RANGES)

    @staticmethod
    def _is_control(ch: str) -> bool:
        """Category Cc or Cf."""
        return unicodedata.category(ch) in ("Cc", "Cf")

    @staticmethod
    def _is_special(ch: str) -> bool:
        """Bracketed tokens such as [CLS] or [unused1]."""
        return bool(ch) and ch[0] == "[" and ch[-1] == "]"

    @staticmethod
    def _is_redundant(token: str) -> bool:
        """Multi-character tokens containing CJK or punctuation: WordPiece never produces them."""
        return len(token) > 1 and any(
            Tokenizer._is_cjk_character(ch) or Tokenizer._is_punctuation(ch) for ch in Tokenizer.stem(token)
        )

    def _normalize_char(self, ch: str) -> str | None:
        """ch (already lowercased) as _tokenize's normalization leaves it, controls removed, memoized;
        None if NFD could reorder it past a neighbour (a non-Mn mark with a combining class)."""
        if ch in self._char_cache:
            return self._char_cache[ch]
        chars = unicodedata.normalize("NFD", ch) if self._do_lower_case else ch
        if self._do_lower_case and any(
            unicodedata.combining(c) and unicodedata.category(c) != "Mn" for c in chars
        ):
            out = None
        else:
            out = "".join(
                c
                for c in chars
                if not (self._do_lower_case and unicodedata.category(c) == "Mn")
                and not (ord(c) in (0, 0xFFFD) or self._is_control(c))
            )
        self._char_cache[ch] = out
        return out

    def _normalize_with_mapping(self, text: str) -> tuple[str, list[int]]:
        """Normalized text (as _tokenize sees it, controls removed) and each char's source index."""
        lowered = text.lower() if self._do_lower_case else text
        if len(lowered) == len(text):  # only U+0130 changes length under str.lower()
            for ch in set(lowered).difference(self._char_cache):
                self._normalize_char(ch)
            pieces = list(map(self._char_cache.__getitem__, lowered))
            if None not in pieces:
                normalized = "".join(pieces)
                if len(normalized) == len(pieces) and "" not in pieces:  # one char per char
                    return normalized, list(range(len(pieces)))
                return normalized, [i for i, piece in enumerate(pieces) for _ in piece]
        # General case: lowercase the whole text (final sigma depends on context) and keep
        # track of source chars, then NFD with canonical ordering across source chars.
        chars, j = [], 0
        for i, ch in enumerate(text):
            n = len(ch.lower()) if self._do_lower_case else 1
            chars.extend((c, i) for c in unicodedata.normalize("NFD", lowered[j : j + n]))
            j += n
        k = 0
        while k < len(chars):  # stable sort of each run of marks by combining class
            end = k
            while end < len(chars) and unicodedata.combining(chars[end][0]):
                end += 1
            chars[k:end] = sorted(chars[k:end], key=lambda item: unicodedata.combining(item[0]))
            k = end + 1
        kept = [
            (c, i)
            for c, i in chars
            if unicodedata.category(c) != "Mn" and not (ord(c) in (0, 0xFFFD) or self._is_control(c))
        ]
        return "".join(c for c, _ in kept), [i for _, i in kept]

    def rematch(self, text: str, tokens: Sequence[str]) -> list[list[int]]:
        """For each token, the indices of the characters of `text` it came from ([] for [xxx] tokens)."""
        normalized, char_mapping = self._normalize_with_mapping(text)
        token_mapping, offset = [], 0
        is_special, stem = self._is_special, self.stem
        for token in tokens:
            if is_special(token):
                token_mapping.append([])
                continue
            token = stem(token)
            start = normalized.find(token, offset)
            if start < 0:
                raise ValueError(f"token {token!r} does not occur in the text after position {offset}")
            end = start + len(token)
            token_mapping.append(char_mapping[start:end])
            offset = end
        return token_mapping

    def _token_spans(self, text: str, tokens: list[str]) -> Offsets:
        return _spans(self.rematch(text, tokens))

    # -- fast path --------------------------------------------------------------

    def _content(self, texts: Sequence[str], tokens: bool = False, offsets: bool = False) -> list[tuple]:
        if not self.fast:
            return super()._content(texts, tokens, offsets)
        fast = self._fast_path
        exact = [fast.supports(text) for text in texts]
        if all(exact):
            return fast.encode(list(texts), tokens, offsets, self)
        rust = iter(fast.encode([t for t, ok in zip(texts, exact) if ok], tokens, offsets, self))
        results = []
        for text, ok in zip(texts, exact):
            if ok:
                results.append(next(rust))
                continue
            pieces = self._tokenize(text)
            spans = _spans(self.rematch(text, pieces)) if offsets else None
            results.append((pieces if tokens else self.tokens_to_ids(pieces), spans))
        return results

    def _normalize_word(self, word: str) -> str:
        """A source-text slice as _tokenize sees it (used for words the Rust path reports as unknown)."""
        if self._do_lower_case:
            word = lowercase_and_normalize(word)
        return "".join(ch for ch in word if self._char_kind(ch) != _DROP)


class _FastWordPiece:
    """Tokenizer's rules as an HF `tokenizers` (Rust) pipeline, for the texts it reproduces exactly."""

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
        """Whether Rust tokenizes this text exactly as the rules do (else the pure path is used)."""
        if self.unsafe.search(text) is not None:
            return False
        starts, ends = self.unsafe_astral
        for ch in _ASTRAL.findall(text) if starts else ():
            k = bisect.bisect_right(starts, ord(ch)) - 1
            if k >= 0 and ord(ch) <= ends[k]:
                return False
        return True

    def encode(self, texts: Sequence[str], tokens: bool, offsets: bool, owner: Tokenizer) -> list[tuple]:
        """Per text: (tokens or ids, spans or None), without start/end tokens."""
        if not texts:
            return []
        if len(texts) == 1:
            encodings = [self.rust.encode(texts[0], add_special_tokens=False)]
        elif tokens or offsets:
            encodings = self.rust.encode_batch(texts, add_special_tokens=False)
        else:
            encodings = self.encode_batch_fast(texts, add_special_tokens=False)
        unknown = self.unknown_id
        if not (tokens or offsets):
            batch = [encoding.ids for encoding in encodings]
            if any(unknown in ids for ids in batch):
                batch = [self._known(ids, text, owner) for ids, text in zip(batch, texts)]
            return [(ids, None) for ids in batch]
        results = []
        for text, encoding in zip(texts, encodings):
            ids = encoding.ids
            spans = encoding.offsets if offsets else None
            if tokens:
                pieces = encoding.tokens
                if unknown in ids:  # bert4keras keeps an unknown word whole
                    for k, (i, (start, end)) in enumerate(zip(ids, encoding.offsets)):
                        if i == unknown:
                            pieces[k] = owner._normalize_word(text[start:end])
                results.append((pieces, spans))
                continue
            results.append((self._known(ids, text, owner), spans))
        return results

    def _known(self, ids: list[int], text: str, owner: Tokenizer) -> list[int]:
        """ids with the Rust unknown-word id replaced by the vocab's [UNK] id (an error without one)."""
        if self.unknown_id not in ids:
            return ids
        unk = owner._token_unk_id
        if unk is None:
            start, end = self.rust.encode(text, add_special_tokens=False).offsets[ids.index(self.unknown_id)]
            raise ValueError(owner._missing_unk_message(owner._normalize_word(text[start:end])))
        return [unk if i == self.unknown_id else i for i in ids]


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


# ---------------------------------------------------------------------------
# SentencePiece
# ---------------------------------------------------------------------------


class SpTokenizer(TokenizerBase):
    """A SentencePiece model (T5, mT5, ALBERT, LLaMA/Mistral-style) behind the Tokenizer API."""

    def __init__(
        self,
        sp_model_path: str | os.PathLike,
        token_start: str | None = None,
        token_end: str | None = "</s>",
        **kwargs: Any,
    ):
        super().__init__(token_start=token_start, token_end=token_end, **kwargs)
        try:
            import sentencepiece
        except ImportError as e:
            raise ImportError("SpTokenizer needs the 'sentencepiece' package: pip install sentencepiece") from e
        path = os.fspath(sp_model_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"SentencePiece model {path!r} does not exist")
        self.sp_model = sentencepiece.SentencePieceProcessor()
        try:
            self.sp_model.Load(path)
        except (OSError, RuntimeError) as e:
            raise ValueError(f"{path!r} is not a SentencePiece model: {e}") from e
        self._model_name = f"SentencePiece model {path!r}"
        pad_id = self.sp_model.pad_id()
        self._token_pad = self.sp_model.id_to_piece(pad_id) if pad_id >= 0 else None
        self._token_unk = self.sp_model.id_to_piece(self.sp_model.unk_id())
        self._vocab_size = self.sp_model.get_piece_size()
        for name in ("pad", "unk", "mask", "start", "end"):
            setattr(self, f"_token_{name}_id", self._piece_id(getattr(self, f"_token_{name}")))
        for name in ("start", "end"):
            token = getattr(self, f"_token_{name}")
            if token is not None and getattr(self, f"_token_{name}_id") is None:
                raise ValueError(
                    f"token_{name}={token!r} is not a piece of the {self._model_name}; "
                    f"pass token_{name}=None or one of its pieces"
                )

    def _piece_id(self, piece: str | None) -> int | None:
        """Id of a piece the model has, else None (SentencePiece itself answers the unk id)."""
        if piece is None:
            return None
        i = self.sp_model.piece_to_id(piece)
        return i if self.sp_model.id_to_piece(i) == piece else None

    def token_to_id(self, token: str) -> int:
        """Id of a piece (the unk id for unknown pieces)."""
        return self.sp_model.piece_to_id(token)

    def id_to_token(self, i: int) -> str:
        """Piece of an id ('' past the model's pieces, e.g. for padded embedding rows)."""
        return self.sp_model.id_to_piece(i) if 0 <= i < self._vocab_size else ""

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids: token_translate undone, then control, unknown and unused pieces and ids
        past the model skipped."""
        tokens = []
        for i in ids:
            token = self.id_to_token(i)
            if token in self._token_translate_inv:
                tokens.append(self._token_translate_inv[token])
            elif self._is_decodable(i):
                tokens.append(token)
        return self.sp_model.decode_pieces(tokens)

    def _tokenize(self, text: str) -> list[str]:
        """SentencePiece pieces of text (after the pre_tokenize hook, words joined by spaces)."""
        if self._pre_tokenize is not None:
            text = " ".join(self._pre_tokenize(text))
        return self.sp_model.encode_as_pieces(text)

    def _is_special(self, i: int) -> bool:
        """Control (<s>, </s>, <pad>), unknown or unused piece."""
        return self.sp_model.is_control(i) or self.sp_model.is_unknown(i) or self.sp_model.is_unused(i)

    def _is_decodable(self, i: int) -> bool:
        """Whether decode() outputs this id."""
        return 0 <= i < self._vocab_size and not self._is_special(i)


# ---------------------------------------------------------------------------
# GPT-2 byte-level BPE
# ---------------------------------------------------------------------------

# GPT-2's pre-tokenization: contractions, letters, digits, other symbols, spaces.
_GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@functools.lru_cache(maxsize=None)
def _byte_to_char() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (printable Latin-1 bytes map to themselves)."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in printable]
    mapping = {b: chr(b) for b in printable}
    mapping.update({b: chr(256 + n) for n, b in enumerate(others)})
    return mapping


def _bytes_to_token(data: bytes) -> str:
    table = _byte_to_char()
    return "".join(table[b] for b in data)


class BPETokenizer(TokenizerBase):
    """GPT-2 byte-level BPE from vocab.json + merges.txt (from_files) or a tiktoken rank file.

    The Rust path of HF `tokenizers` is used when installed (fast=None); fast=False runs the
    pure-Python reference (needs the `regex` package). No start/end tokens by default.
    """

    def __init__(
        self,
        encoder: dict[str, int],
        merges: Sequence[tuple[str, str]],
        special_tokens: Sequence[str] | None = None,
        token_start: str | None = None,
        token_end: str | None = None,
        fast: bool | None = None,
        **kwargs: Any,
    ):
        super().__init__(token_start=token_start, token_end=token_end, **kwargs)
        self._encoder = dict(encoder)
        self._decoder = {i: token for token, i in self._encoder.items()}
        self._merges = [tuple(pair) for pair in merges]
        self._ranks = {pair: rank for rank, pair in enumerate(self._merges)}
        if special_tokens is None:
            special_tokens = [t for t in ("<|endoftext|>",) if t in self._encoder]
        for token in special_tokens:
            if token not in self._encoder:
                raise ValueError(f"special token {token!r} is not in the BPE vocab")
        self._special_tokens = list(special_tokens)
        self._vocab_size = max(self._decoder, default=-1) + 1
        self._token_pad = self._token_unk = self._token_mask = None
        for name in ("pad", "unk", "mask", "start", "end"):
            setattr(self, f"_token_{name}_id", self._encoder.get(getattr(self, f"_token_{name}")))
        for name in ("start", "end"):
            token = getattr(self, f"_token_{name}")
            if token is not None and token not in self._encoder:
                raise ValueError(f"token_{name}={token!r} is not in the BPE vocab")
        self._cache: dict[str, list[str]] = {}
        self._splitter = None
        self.fast = self._choose_fast(fast)

    @classmethod
    def from_files(cls, vocab_path: str | os.PathLike, merges_path: str | os.PathLike, **kwargs: Any) -> BPETokenizer:
        """Load GPT-2's vocab.json and merges.txt."""
        try:
            encoder = json.loads("".join(_read_lines(os.fspath(vocab_path), "utf-8", "vocab file")))
        except json.JSONDecodeError as e:
            raise ValueError(f"vocab file {os.fspath(vocab_path)!r} is not JSON: {e}") from e
        merges = []
        for number, line in enumerate(_read_lines(os.fspath(merges_path), "utf-8", "merges file"), 1):
            if line.startswith("#version") or not line.strip():
                continue
            pair = line.split()
            if len(pair) != 2:
                raise ValueError(f"merges file {os.fspath(merges_path)!r} line {number} is not a pair: {line!r}")
            merges.append((pair[0], pair[1]))
        return cls(encoder, merges, **kwargs)

    @classmethod
    def from_tiktoken(
        cls,
        path: str | os.PathLike,
        special_tokens: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> BPETokenizer:
        """Load a tiktoken rank file ('base64-token rank' per line), e.g. whisper's gpt2.tiktoken.

        special_tokens maps extra tokens to ids (default: <|endoftext|> right after the ranks).
        """
        ranks: dict[bytes, int] = {}
        for number, line in enumerate(_read_lines(os.fspath(path), "utf-8", "tiktoken file"), 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
            except ValueError as e:
                raise ValueError(f"tiktoken file {os.fspath(path)!r} line {number} is not 'base64 rank': {line!r}") from e
        encoder = {_bytes_to_token(token): rank for token, rank in ranks.items()}
        if special_tokens is None:
            special_tokens = {"<|endoftext|>": max(ranks.values(), default=-1) + 1}
        encoder.update(special_tokens)
        merges = [
            (_bytes_to_token(left), _bytes_to_token(right))
            for left, right in (_rank_merge(ranks, token, rank) for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]) if len(token) > 1)
        ]
        return cls(encoder, merges, special_tokens=list(special_tokens), **kwargs)

    @property
    def _fast_path(self) -> Any:
        """The Rust tokenizer, built on first use."""
        if self._rust is None:
            from tokenizers import AddedToken, decoders, models, pre_tokenizers
            from tokenizers import Tokenizer as RustTokenizer

            rust = RustTokenizer(models.BPE(self._encoder, self._merges))
            rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
            rust.decoder = decoders.ByteLevel()
            rust.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in self._special_tokens])
            self._rust = rust
        return self._rust

    def token_to_id(self, token: str) -> int:
        """Id of a byte-level token."""
        try:
            return self._encoder[token]
        except KeyError:
            raise ValueError(f"{token!r} is not in the BPE vocab") from None

    def id_to_token(self, i: int) -> str:
        """Byte-level token of an id."""
        return self._decoder[i]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids (invalid UTF-8 from partial characters becomes U+FFFD)."""
        table = {c: b for b, c in _byte_to_char().items()}
        text, data = [], bytearray()
        for token in self.ids_to_tokens(ids):
            if token in self._special_tokens:
                text.append(data.decode("utf-8", "replace"))
                text.append(token)
                data = bytearray()
            else:
                data.extend(table[c] for c in token)
        text.append(data.decode("utf-8", "replace"))
        return "".join(text)

    def _pieces(self, text: str) -> list[tuple[str, int]]:
        """Pre-tokens with their start character, special tokens kept whole."""
        if self._splitter is None:
            try:
                import regex
            except ImportError as e:
                raise ImportError("BPETokenizer(fast=False) needs the 'regex' package: pip install regex") from e
            specials = "|".join(re.escape(t) for t in sorted(self._special_tokens, key=len, reverse=True))
            self._splitter = (regex.compile(specials) if specials else None, regex.compile(_GPT2_PATTERN))
        special, gpt2 = self._splitter
        pieces, start = [], 0
        for match in list(special.finditer(text)) if special else []:
            pieces.extend((m.group(), start + m.start()) for m in gpt2.finditer(text[start : match.start()]))
            pieces.append((match.group(), match.start()))
            start = match.end()
        pieces.extend((m.group(), start + m.start()) for m in gpt2.finditer(text[start:]))
        return pieces

    def _bpe(self, word: str) -> list[str]:
        """Merge the lowest-ranked adjacent pair until none is in the merges."""
        if word in self._cache:
            return self._cache[word]
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self._ranks.get(pair, len(self._ranks)), k) for k, pair in enumerate(zip(parts, parts[1:]))]
            rank, _ = min(pairs)
            if rank == len(self._ranks):
                break
            best, merged, k = self._merges[rank], [], 0
            while k < len(parts):
                if k + 1 < len(parts) and (parts[k], parts[k + 1]) == best:
                    merged.append(parts[k] + parts[k + 1])
                    k += 2
                else:
                    merged.append(parts[k])
                    k += 1
            parts = merged
        self._cache[word] = parts
        return parts

    def _tokenize(self, text: str) -> list[str]:
        """Byte-level BPE tokens of text."""
        return [token for tokens, _ in self._pure_pieces(text) for token in tokens]

    def _pure_pieces(self, text: str) -> list[tuple[list[str], list[tuple[int, int]]]]:
        """Per pre-token: its BPE tokens and their character spans."""
        out = []
        for piece, start in self._pieces(text):
            if piece in self._special_tokens:
                out.append(([piece], [(start, start + len(piece))]))
                continue
            # owner[b] = index of the character that byte b of the piece belongs to
            data = piece.encode("utf-8")
            owner = [i for i, ch in enumerate(piece) for _ in ch.encode("utf-8")]
            tokens, spans, b = self._bpe(_bytes_to_token(data)), [], 0
            for token in tokens:
                spans.append((start + owner[b], start + owner[b + len(token) - 1] + 1))
                b += len(token)
            out.append((tokens, spans))
        return out

    def _token_spans(self, text: str, tokens: list[str]) -> Offsets:
        return [span for _, spans in self._pure_pieces(text) for span in spans]

    def _content(self, texts: Sequence[str], tokens: bool = False, offsets: bool = False) -> list[tuple]:
        if not self.fast:
            return super()._content(texts, tokens, offsets)
        texts = list(texts)
        if tokens or offsets:
            encodings = self._fast_path.encode_batch(texts, add_special_tokens=False)
        else:
            rust = self._fast_path
            encodings = getattr(rust, "encode_batch_fast", rust.encode_batch)(texts, add_special_tokens=False)
        return [
            (e.tokens if tokens else e.ids, e.offsets if offsets else None) for e in encodings
        ]


def _rank_merge(ranks: dict[bytes, int], token: bytes, rank: int) -> tuple[bytes, bytes]:
    """The pair whose merge makes `token`: BPE over its bytes using only lower-ranked merges."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        candidates = [
            (ranks.get(parts[k] + parts[k + 1], rank), k) for k in range(len(parts) - 1)
        ]
        best, k = min(candidates)
        if best >= rank:
            break
        parts[k : k + 2] = [parts[k] + parts[k + 1]]
    if len(parts) != 2:
        raise ValueError(f"tiktoken rank {rank} ({token!r}) cannot be built from lower-ranked tokens")
    return parts[0], parts[1]
