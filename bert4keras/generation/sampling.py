"""Token choice on logits, used by the cached engine: top-k / top-p filters, Gumbel-max
sampling and the beam-search candidates."""

from __future__ import annotations

import numpy as np
from keras import ops


def filter_top_k(logits, k: int):
    """Keep the ``k`` largest logits of each row, -inf elsewhere."""
    kth = ops.top_k(logits, k)[0][:, -1:]
    return ops.where(logits < kth, -np.inf, logits)


def filter_top_p(logits, p: float):
    """Keep the most probable tokens whose mass first reaches ``p`` (nucleus), -inf elsewhere."""
    sorted_logits = ops.flip(ops.sort(logits, axis=-1), axis=-1)
    probas = ops.softmax(sorted_logits, axis=-1)
    kept = ops.cumsum(probas, axis=-1) - probas < p  # mass of the more probable ones < p
    cutoff = ops.min(ops.where(kept, sorted_logits, np.inf), axis=-1, keepdims=True)
    return ops.where(logits < cutoff, -np.inf, logits)


def sample_from_logits(logits, uniform):
    """One token per row drawn from ``softmax(logits)`` (Gumbel-max with ``uniform`` noise)."""
    gumbel = -ops.log(-ops.log(ops.clip(uniform, 1e-20, 1.0 - 1e-7)))
    return ops.argmax(logits + gumbel, axis=-1)


def beam_candidates(scores, logprobs, num_beams: int):
    """Best ``num_beams`` continuations per prompt: (scores, source beam, token), (b, beams) each."""
    vocab = ops.shape(logprobs)[-1]
    total = ops.reshape(scores[:, :, None] + ops.reshape(logprobs, (-1, num_beams, vocab)),
                        (-1, num_beams * vocab))
    top_scores, flat = ops.top_k(total, num_beams)
    return top_scores, flat // vocab, flat % vocab
