"""Autoregressive decoding.

* ``AutoRegressiveDecoder`` (``decoder``): bert4keras 0.11.5's decoder class, same API
  and ids, plus ``cached_beam_search`` / ``cached_random_sample`` on the engine;
* ``generate`` and ``GenerationEngine`` (``engine``): decoding with a key/value cache,
  compiled on JAX, behind ``model.generate``;
* ``sampling``: the token-choice functions; ``stream_text`` (``text``): streamed ids to text.
"""

from bert4keras.generation.decoder import AutoRegressiveDecoder, LastTokenModel, softmax
from bert4keras.generation.engine import GenerationEngine, generate, run_engine
from bert4keras.generation.sampling import (
    beam_candidates, filter_top_k, filter_top_p, sample_from_logits,
)
from bert4keras.generation.text import stream_text

__all__ = [
    "AutoRegressiveDecoder", "GenerationEngine", "LastTokenModel", "beam_candidates",
    "filter_top_k", "filter_top_p", "generate", "run_engine", "sample_from_logits", "softmax",
    "stream_text",
]
