"""`SpTokenizer`: a SentencePiece model (T5, mT5, ALBERT, LLaMA/Mistral-style) behind the Tokenizer API."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .base import TokenizerBase


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
        pad_id = self.sp_model.pad_id()
        self._token_pad = self.sp_model.id_to_piece(pad_id) if pad_id >= 0 else None
        self._token_unk = self.sp_model.id_to_piece(self.sp_model.unk_id())
        self._vocab_size = self.sp_model.get_piece_size()
        self._set_special_ids(self._piece_id, f"is not a piece of the SentencePiece model {path!r}")

    def _piece_id(self, piece: str) -> int | None:
        """Id of a piece the model has, else None (SentencePiece itself answers the unk id)."""
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
