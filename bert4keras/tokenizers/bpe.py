"""`BPETokenizer`: GPT-2 byte-level BPE, through HF `tokenizers` (Rust) or a pure-Python reference."""

from __future__ import annotations

import base64
import functools
import json
import os
import re
from collections.abc import Sequence
from typing import Any

from .base import Offsets, TokenizerBase, _read_lines

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
        self._set_special_ids(self._encoder.get, "is not in the BPE vocab")
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
        """Byte-level token of an id; an id outside the vocabulary is an error naming it."""
        try:
            return self._decoder[i]
        except (KeyError, TypeError):
            raise ValueError(f"id {i!r} is not in this BPE vocabulary "
                             f"(ids 0 to {len(self._decoder) - 1})") from None

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

    def _fast_content(self, texts: Sequence[str], tokens: bool, offsets: bool) -> list[tuple]:
        """_content through Rust (encode_batch_fast, which skips offsets, when none are needed)."""
        rust, texts = self._fast_path, list(texts)
        if tokens or offsets:
            encodings = rust.encode_batch(texts, add_special_tokens=False)
        else:
            encodings = getattr(rust, "encode_batch_fast", rust.encode_batch)(texts, add_special_tokens=False)
        return [(e.tokens if tokens else e.ids, e.offsets if offsets else None) for e in encodings]


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
