"""Backend-specific kernels: where a backend has a faster way to compute the same numbers.

* dropout keep masks for :func:`bert4keras.backend.dropout`, cheaper on CPU than those
  ``keras.random.dropout`` draws (docs/training.md, "Dropout masks");
* on PyTorch: dense layers as one ``addmm`` (``F.linear``) instead of a matmul and a
  separate bias add, exact GELU as ``F.gelu`` (one pass instead of four), and attention
  straight into ``F.scaled_dot_product_attention``, and Adam's step as one fused in-place
  pass over all variables (``torch._fused_adam_``). Why and by how much: docs/performance.md.
"""

from __future__ import annotations

from typing import Sequence

import keras

__all__ = ["jax_keep_mask", "torch_keep_mask", "linear", "gelu_erf", "fused_attention_supported",
           "dot_product_attention", "torch_fused_adam"]


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


def linear(x, kernel, bias=None):
    """``x @ kernel + bias`` with ``kernel`` (in, out); on PyTorch one fused ``addmm``."""
    if keras.backend.backend() == "torch":
        import torch

        kernel = keras.ops.convert_to_tensor(kernel)  # a Keras variable's (autocast) value
        bias = None if bias is None else keras.ops.convert_to_tensor(bias)
        return torch.nn.functional.linear(x, kernel.T, bias)
    x = keras.ops.matmul(x, kernel)
    return x if bias is None else x + bias


def gelu_erf(x):
    """Exact GELU ``0.5 x (1 + erf(x / sqrt 2))``; on PyTorch ``F.gelu``, the same formula in one pass."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.nn.functional.gelu(x)
    return 0.5 * x * (1.0 + keras.ops.erf(x * 0.7071067811865476))


def fused_attention_supported(dtype) -> bool:
    """Whether :func:`dot_product_attention` runs in ``dtype``: Keras's JAX attention asks for
    float16 dots accumulated in float32, which XLA:CPU lacks."""
    if keras.backend.backend() != "jax" or keras.backend.standardize_dtype(dtype) != "float16":
        return True
    import jax

    return jax.default_backend() != "cpu"


def dot_product_attention(q, k, v, bias=None, mask=None, scale: float = 1.0):
    """Softmax attention on (b, n, h, d) tensors with an optional float ``bias`` or bool
    ``mask`` (True = attend), broadcastable to (b, h, n, m); not both.

    On PyTorch ``F.scaled_dot_product_attention`` takes the bool mask as it is (Keras's
    wrapper first turns it into a float bias); elsewhere ``keras.ops.dot_product_attention``.
    """
    if keras.backend.backend() != "torch":
        return keras.ops.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=scale)
    import torch

    attn_mask = mask if bias is None else bias
    o = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attn_mask, scale=scale)
    return o.transpose(1, 2)


def torch_fused_adam(params, grads, m, v, learning_rate, beta_1: float, beta_2: float,
                     epsilon: float, step) -> None:
    """Adam with bias correction, ``θ -= lr·m̂/(√v̂ + ε)``, updating ``params``, ``m`` and ``v``
    (lists of float torch tensors) in place in one vectorised pass per tensor: no per-variable
    Python ops and no temporaries the size of the model (``torch._foreach_*`` on CPU makes
    several). ``step`` is the 1-based step number."""
    import torch

    steps = [torch.full((), float(step), dtype=torch.float32, device=params[0].device)] * len(params)
    with torch.no_grad():
        torch._fused_adam_(params, grads, m, v, [], steps, lr=float(learning_rate), beta1=beta_1,
                           beta2=beta_2, weight_decay=0.0, eps=epsilon, amsgrad=False,
                           maximize=False)
