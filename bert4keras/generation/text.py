"""Streamed ids to text: incremental decoding that never splits a character or a word."""

from __future__ import annotations


def stream_text(stream, tokenizer):
    """Turn ``generate(..., stream=True)`` into text pieces per prompt: a piece is released once
    the next token shows it complete (no half of a multi-byte character, no WordPiece word
    cut before its ``##`` continuation); the rest comes at the end."""
    ids, shown = None, None
    for step in stream:
        if ids is None:
            ids, shown = [[] for _ in step], ["" for _ in step]
        pieces = []
        for i, token in enumerate(step):
            if token is not None:
                ids[i].append(token)
            start = _last_word_start(ids[i], tokenizer)
            pieces.append(_release(tokenizer.decode(ids[i][:start]) if start else "", shown, i))
        yield pieces
    if ids is not None:
        yield [_release(tokenizer.decode(x), shown, i) for i, x in enumerate(ids)]


def _last_word_start(ids: list, tokenizer) -> int:
    """Index of the token starting the last (maybe unfinished) word: WordPiece ``##``
    pieces continue a word; without ``id_to_token`` every token may start one."""
    to_token = getattr(tokenizer, "id_to_token", None)
    start = len(ids) - 1
    while to_token is not None and start > 0 and str(to_token(ids[start])).startswith("##"):
        start -= 1
    return max(start, 0)


def _release(text: str, shown: list, i: int) -> str:
    text = text.rstrip("\ufffd")
    if not text.startswith(shown[i]):
        return ""
    piece, shown[i] = text[len(shown[i]):], text
    return piece
