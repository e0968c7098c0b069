"""What every tokenizer shares: vocab files, truncation, BERT's character classes and TokenizerBase.

TokenizerBase turns a subclass's `_tokenize` (and, with `fast`, its `_fast_content`) into
tokenize/encode/encode_batch with bert4keras 0.11.5's start/end tokens and truncation.
"""

from __future__ import annotations

import importlib.util
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

Offsets = list[tuple[int, int]]

# ---------------------------------------------------------------------------
# Vocabulary files and truncation
# ---------------------------------------------------------------------------


def _read_lines(path: str, encoding: str, what: str) -> list[str]:
    """All lines of a text file, without a leading byte-order mark (Windows editors add one,
    and it would glue itself to the first token); a decoding error names the file and byte."""
    try:
        with open(path, encoding=encoding) as reader:
            lines = reader.readlines()
        if lines and lines[0].startswith("\ufeff"):
            lines[0] = lines[0][1:]
        return lines
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
    first_line: dict[str, int] = {}
    blank, repeated = [], []
    for number, line in enumerate(_read_lines(dict_path, encoding, "vocab file"), 1):
        fields = line.split()
        token = fields[0] if fields else line.strip()
        if not line.strip("\r\n"):  # empty; whitespace tokens (Google's vocab has U+2028) are real
            blank.append(number)
        if token in first_line:
            repeated.append(f"{number} (= line {first_line[token]})")
        first_line.setdefault(token, number)
        # bert4keras 0.11.5's numbering: a repeated token is renumbered, so later ids shift.
        token_dict[token] = len(token_dict)
    if blank or repeated:
        _warn_vocab_lines(dict_path, blank, repeated)
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
        if token not in new_token_dict and not _is_redundant(token):
            new_token_dict[token] = len(new_token_dict)
            keep_tokens.append(index)
    return new_token_dict, keep_tokens


def _warn_vocab_lines(path: str, blank: list[int], repeated: list[str]) -> None:
    """Warn that ids no longer equal line numbers, which Google/HF checkpoints rely on."""
    parts = []
    if blank:
        parts.append(f"blank line(s) {_first(blank)} (read as the token '')")
    if repeated:
        parts.append(f"repeated token(s) on line(s) {_first(repeated)}")
    effect = ("; numbered as bert4keras 0.11.5 did, a repeated token takes the next id and every "
              "later token one less than its line number - 1, so ids may not match a checkpoint's "
              "embedding rows") if repeated else ""
    warnings.warn(f"vocab file {path!r} has {' and '.join(parts)}{effect}", stacklevel=3)


def _first(items: list, count: int = 10) -> str:
    shown = ", ".join(str(i) for i in items[:count])
    return shown + (f", ... ({len(items)} in all)" if len(items) > count else "")


def check_text(value: Any, what: str, tokens: bool = True) -> None:
    """Raise ``TypeError`` unless ``value`` is a str (or, with ``tokens``, a list/tuple of
    token strings). Bytes are refused rather than guessed at: decode them first."""
    if isinstance(value, str):
        return
    if isinstance(value, (bytes, bytearray)):
        raise TypeError(f"{what} is {type(value).__name__} ({bytes(value[:30])!r}); tokenizers take "
                        "text: decode it first, e.g. data.decode('utf-8')")
    if tokens and isinstance(value, (list, tuple)):
        for i, token in enumerate(value):
            if not isinstance(token, str):
                raise TypeError(f"{what}[{i}] is {type(token).__name__} {token!r:.40}; a token list "
                                "holds str tokens")
        return
    expected = "a str or a list of str tokens" if tokens else "a str"
    raise TypeError(f"{what} must be {expected}, got {type(value).__name__} {value!r:.40}")


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


# ---------------------------------------------------------------------------
# BERT's character classes (WordPiece's rules, their Rust translation, load_vocab)
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


def _is_punctuation(ch: str) -> bool:
    """Non-alphanumeric printable ASCII or category P*."""
    code = ord(ch)
    return any(a <= code <= b for a, b in _ASCII_PUNCTUATION) or unicodedata.category(ch).startswith("P")


def _is_cjk_character(ch: str) -> bool:
    """CJK Unified Ideographs (with extensions A-F) and compatibility ideographs."""
    code = ord(ch)
    return any(a <= code <= b for a, b in _CJK_RANGES)


def _stem(token: str) -> str:
    """A token without its '##' prefix."""
    return token[2:] if token[:2] == "##" else token


def _is_redundant(token: str) -> bool:
    """Multi-character tokens containing CJK or punctuation: WordPiece never produces them."""
    return len(token) > 1 and any(_is_cjk_character(ch) or _is_punctuation(ch) for ch in _stem(token))


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


# ---------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------


class TokenizerBase:
    """Shared tokenize/encode logic: special tokens, truncation, segment ids.

    Everything goes through `_content`, which runs `_fast_content` (a Rust path, for
    subclasses that set `fast`) or the pure `_tokenize` per text; `tokenize` wraps it.
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

    def _set_special_ids(self, lookup: Callable[[str], int | None], missing: str) -> None:
        """Set `_token_{pad,unk,mask,start,end}_id`, None where the vocab lacks the token;
        a start/end token it lacks is an error, "token_end='x' <missing>; pass token_end=None ..."."""
        for name in ("pad", "unk", "mask", "start", "end"):
            token = getattr(self, f"_token_{name}")
            setattr(self, f"_token_{name}_id", None if token is None else lookup(token))
        for name in ("start", "end"):
            token = getattr(self, f"_token_{name}")
            if token is not None and getattr(self, f"_token_{name}_id") is None:
                raise ValueError(f"token_{name}={token!r} {missing}; pass token_{name}=None or one of its tokens")

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

    # -- the primitive: content tokens/ids of texts, without start/end tokens ----

    def _content(self, texts: Sequence[str], tokens: bool = False, offsets: bool = False) -> list[tuple]:
        """Per text: (tokens if `tokens` else ids, spans if `offsets` else None), no start/end tokens."""
        if self.fast:
            return self._fast_content(texts, tokens, offsets)
        return [self._pure_content(text, tokens, offsets) for text in texts]

    def _pure_content(self, text: str, tokens: bool, offsets: bool) -> tuple:
        """_content of one text by the pure-Python rules: `_tokenize`, then token_translate."""
        pieces = self._tokenize(text)
        if self._token_translate:
            pieces = [self._token_translate.get(token) or token for token in pieces]
        spans = self._token_spans(text, pieces) if offsets else None
        return pieces if tokens else self.tokens_to_ids(pieces), spans

    def _fast_content(self, texts: Sequence[str], tokens: bool, offsets: bool) -> list[tuple]:
        """_content through the Rust path; subclasses that can set `fast` implement it."""
        raise NotImplementedError(f"{type(self).__name__} has no fast path")

    def _token_spans(self, text: str, tokens: list[str]) -> Offsets:
        """(start, end) character span of each token in text."""
        raise NotImplementedError(f"{type(self).__name__} does not compute offsets")

    def _tokenize(self, text: str) -> list[str]:
        """Tokens of text, without start/end tokens."""
        raise NotImplementedError

    # -- tokens and ids -----------------------------------------------------------

    def tokenize(self, text: str, maxlen: int | None = None) -> list[str]:
        """Tokens of `text` with the start/end tokens; truncated (before the end token) to maxlen."""
        check_text(text, "tokenize: text", tokens=False)
        tokens = self._content([text], tokens=True)[0][0]
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

    def decode(self, ids: Sequence[int]) -> str:
        """Readable text of ids."""
        raise NotImplementedError

    # -- encoding -------------------------------------------------------------------

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
        On the pure path texts go through `tokenize`, so a subclass overriding it is honoured
        as in bert4keras 0.11.5.
        """
        check_text(first_text, "encode: first_text")
        if second_text is not None:
            check_text(second_text, "encode: second_text")
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
        for name, texts in (("first_texts", first_texts), ("second_texts", second_texts)):
            if texts is None and name == "second_texts":
                continue
            if not isinstance(texts, Sequence) or isinstance(texts, (str, bytes)):
                raise TypeError(f"encode_batch: {name} must be a list of str, got {type(texts).__name__}")
            for i, text in enumerate(texts):
                if not isinstance(text, str):
                    check_text(text, f"encode_batch: {name}[{i}]", tokens=False)
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
