"""Backend-specific kernels: the dropout keep masks of :func:`bert4keras.backend.dropout`.

Both are cheaper on CPU than the masks ``keras.random.dropout`` draws; why, and by how
much, is in docs/training.md ("Dropout masks").
"""

from __future__ import annotations

from typing import Sequence

import keras

__all__ = ["jax_keep_mask", "torch_keep_mask"]


def _fmix32(h):
    """The murmur3 32-bit finalizer (a bijection with full avalanche), on uint32 arrays."""
    import jax.numpy as jnp

    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def jax_keep_mask(shape: Sequence[int], rate: float, seed):
    """Boolean mask, True with probability ``1 - rate``: each element's flat index hashed
    (two murmur3 finalizer rounds) under a key drawn from ``seed``, kept if >= rate * 2**32."""
    import jax
    import jax.numpy as jnp

    if isinstance(seed, keras.random.SeedGenerator):
        key = seed.next()
    else:  # an int or None: what keras.random.dropout would draw
        from keras.src.random.seed_generator import draw_seed

        key = draw_seed(seed)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    key = key.reshape(-1).astype(jnp.uint32)
    k1 = _fmix32(_fmix32(key[0] ^ jnp.uint32(0x9E3779B9)) + key[-1])
    k2 = _fmix32(k1 ^ _fmix32(key[-1] ^ jnp.uint32(0x7F4A7C15)))
    index, stride = jnp.zeros(shape, jnp.uint32), 1
    for axis in reversed(range(len(shape))):  # flat element index (mod 2**32)
        index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride % 2**32)
        stride *= shape[axis]
    bits = _fmix32(_fmix32(index + k1) ^ k2)
    return bits >= jnp.uint32(min(round(rate * 2**32), 2**32 - 1))


def torch_keep_mask(shape: Sequence[int], rate: float, seed, device):
    """Boolean mask ``torch.rand(shape) >= rate``: from torch's global generator when
    ``seed`` is unseeded, else from a generator seeded by it (as ``keras.random.dropout``)."""
    import torch

    generator = None
    if seed is not None and getattr(seed, "_initial_seed", 0) is not None:
        from keras.src.random.seed_generator import draw_seed

        key = [int(k) for k in keras.ops.convert_to_numpy(draw_seed(seed)).reshape(-1)]
        generator = torch.Generator(device=device).manual_seed(
            (key[0] * 0x9E3779B97F4A7C15 + key[-1]) % 2**63)
    return torch.rand(tuple(shape), generator=generator, device=device) >= rate
