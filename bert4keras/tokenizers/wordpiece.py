"""BERT's WordPiece `Tokenizer` with bert4keras 0.11.5's rules.

The pure-Python rules are the reference; when HF `tokenizers` is installed the same
rules run in Rust (`_fast_wordpiece`), which hands back plain data and leaves unknown
words and the texts it cannot reproduce to this class.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from ._fast_wordpiece import FastEncoding, FastWordPiece
from .base import (
    Offsets,
    TokenizerBase,
    _is_cjk_character,
    _is_punctuation,
    _is_redundant,
    _stem,
    load_vocab,
    lowercase_and_normalize,
)

_CJK_PUNCTUATION = (
    "\uff02\uff03\uff04\uff05\uff06\uff07\uff08\uff09\uff0a\uff0b\uff0c\uff0d\uff0f\uff1a\uff1b"
    "\uff1c\uff1d\uff1e\uff20\uff3b\uff3c\uff3d\uff3e\uff3f\uff40\uff5b\uff5c\uff5d\uff5e\uff5f"
    "\uff60\uff62\uff63\uff64\u3000\u3001\u3003\u3008\u3009\u300a\u300b\u300c\u300d\u300e\u300f"
    "\u3010\u3011\u3014\u3015\u3016\u3017\u3018\u3019\u301a\u301b\u301c\u301d\u301e\u301f\u3030"
    "\u303e\u303f\u2013\u2014\u2018\u2019\u201b\u201c\u201d\u201e\u201f\u2026\u2027\ufe4f\ufe51"
    "\ufe54\u00b7\uff01\uff1f\uff61\u3002"
)
_DECODE_GLUE = re.compile("(%s) " % "|".join(re.escape(p) for p in _CJK_PUNCTUATION + "+-/={(<["))

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


def _spans(mapping: list[list[int]]) -> Offsets:
    """(start, end) character spans of rematch() lists; (0, 0) for special tokens."""
    return [(m[0], m[-1] + 1) if m else (0, 0) for m in mapping]


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
        self._set_special_ids(token_dict.get, f"is not in the {self._vocab_name}")
        self._kind_cache: dict[str, int] = {}
        self._spacing: dict[int, str | None] = {}  # str.translate table of the classified chars
        self._char_cache: dict[str, str | None] = {}
        self.fast = self._choose_fast(fast)

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
        """Token of an id; an id outside the vocabulary is an error naming it."""
        try:
            return self._token_dict_inv[i]
        except (KeyError, TypeError):
            raise ValueError(f"id {i!r} is not in the {self._vocab_name} "
                             f"(ids 0 to {len(self._token_dict_inv) - 1})") from None

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

    # -- the rules (pure-Python reference) --------------------------------------

    stem = staticmethod(_stem)
    _is_punctuation = staticmethod(_is_punctuation)
    _is_cjk_character = staticmethod(_is_cjk_character)
    _is_redundant = staticmethod(_is_redundant)

    @staticmethod
    def _is_space(ch: str) -> bool:
        """Space, \\n, \\r, \\t or category Zs."""
        return ch in " \n\r\t" or unicodedata.category(ch) == "Zs"

    @staticmethod
    def _is_control(ch: str) -> bool:
        """Category Cc or Cf."""
        return unicodedata.category(ch) in ("Cc", "Cf")

    @staticmethod
    def _is_special(ch: str) -> bool:
        """Bracketed tokens such as [CLS] or [unused1]."""
        return bool(ch) and ch[0] == "[" and ch[-1] == "]"

    @staticmethod
    def _cjk_punctuation() -> str:
        """Full-width and CJK punctuation that decode() glues to the next token."""
        return _CJK_PUNCTUATION

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

    def _normalize_word(self, word: str) -> str:
        """A source-text slice as _tokenize sees it: lowercased and stripped as configured, controls dropped."""
        if self._do_lower_case:
            word = lowercase_and_normalize(word)
        return "".join(ch for ch in word if self._char_kind(ch) != _DROP)

    # -- offsets ----------------------------------------------------------------

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
    def _fast_path(self) -> FastWordPiece:
        """The Rust pipeline, built on first use."""
        if self._rust is None:
            self._rust = FastWordPiece(self._token_dict, self._do_lower_case, self._word_maxlen)
        return self._rust

    def _fast_content(self, texts: Sequence[str], tokens: bool, offsets: bool) -> list[tuple]:
        """_content through Rust; a text it cannot reproduce exactly takes the pure path."""
        fast = self._fast_path
        exact = [fast.supports(text) for text in texts]
        encoded = iter(fast.encode([text for text, ok in zip(texts, exact) if ok], tokens, offsets))
        results = []
        for text, ok in zip(texts, exact):
            if not ok:
                results.append(self._pure_content(text, tokens, offsets))
                continue
            encoding = next(encoded)
            units = self._fast_tokens(text, encoding) if tokens else self._fast_ids(text, encoding)
            results.append((units, encoding.offsets if offsets else None))
        return results

    def _fast_tokens(self, text: str, encoding: FastEncoding) -> list[str]:
        """Tokens of a Rust encoding (with tokens); an unknown word stays whole, as _tokenize keeps it."""
        tokens = encoding.tokens
        for k in encoding.unknown:
            start, end = encoding.offsets[k]
            tokens[k] = self._normalize_word(text[start:end])
        return tokens

    def _fast_ids(self, text: str, encoding: FastEncoding) -> list[int]:
        """Ids of a Rust encoding; an unknown word gets the [UNK] id (an error if the vocab has none)."""
        if not encoding.unknown:
            return encoding.ids
        if self._token_unk_id is None:
            if encoding.tokens is None:
                encoding = self._fast_path.encode([text], tokens=True)[0]
            word = self._fast_tokens(text, encoding)[encoding.unknown[0]]
            raise ValueError(self._missing_unk_message(word))
        ids = encoding.ids
        for k in encoding.unknown:
            ids[k] = self._token_unk_id
        return ids
