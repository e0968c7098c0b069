"""Tokenizers with bert4keras 0.11.5's API: BERT WordPiece, SentencePiece and GPT-2 byte-level BPE.

`Tokenizer` keeps bert4keras's pure-Python rules as the reference and, when the HF
`tokenizers` package is installed, runs the same rules in Rust (the "fast path"); both
give identical tokens, ids and offsets (see docs/tokenizers.md). None of them imports Keras.

    base.py              TokenizerBase, load_vocab, save_vocab, truncate_sequences, lowercase_and_normalize
    wordpiece.py         Tokenizer (BERT WordPiece)
    _fast_wordpiece.py   its Rust fast path
    sentencepiece.py     SpTokenizer
    bpe.py               BPETokenizer (GPT-2 byte-level BPE)
"""

from .base import Offsets, TokenizerBase, load_vocab, lowercase_and_normalize, save_vocab, truncate_sequences
from .bpe import BPETokenizer
from .sentencepiece import SpTokenizer
from .wordpiece import Tokenizer

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
