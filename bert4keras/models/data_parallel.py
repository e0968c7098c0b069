"""``data_parallel``: bert4keras 0.11.5's multi-GPU helper, on ``keras.distribution``.

0.11.5 built a new model that split each batch with ``BatchSplit``, ran a replica per
GPU under ``tf.device`` and concatenated the outputs. Keras 3 does data parallelism
itself: ``keras.distribution.DataParallel`` replicates the weights and shards every
batch across the devices inside ``fit``/``evaluate``/``predict``. So this sets that
distribution (globally, as ``keras.distribution.set_distribution`` does) and returns
the model rebuilt under it (a clone with the same weights; weights created before the
distribution live on one device only). Differences: the split is always even (``parts`` must be equal),
the batch size must be divisible by the number of devices, and it needs a backend
with ``keras.distribution`` (JAX; TensorFlow in Keras's own support).
"""

from __future__ import annotations

from typing import Sequence

import keras


def data_parallel(model: keras.Model, devices: int | Sequence[str] | None = None,
                  parts: Sequence[int] | None = None) -> keras.Model:
    """A copy of ``model`` that trains and predicts data-parallel over ``devices``.

    ``devices``: all of ``keras.distribution.list_devices()`` by default, an int n for the first n,
    or a list of device names. ``parts`` (0.11.5's per-device batch shares) must be equal.
    """
    try:
        available = keras.distribution.list_devices()
    except (NotImplementedError, AttributeError, ImportError) as e:
        raise NotImplementedError(
            f"data_parallel uses keras.distribution, which the {keras.backend.backend()!r} backend does "
            "not implement; use KERAS_BACKEND=jax (or run one process per device with torch DDP)"
        ) from e
    if devices is None:
        devices = list(available)
    elif isinstance(devices, int):
        if not 1 <= devices <= len(available):
            raise ValueError(f"data_parallel: asked for {devices} devices, {len(available)} available: {available}")
        devices = list(available[:devices])
    else:
        devices = list(devices)
    if parts is not None:
        parts = list(parts)
        if len(parts) != len(devices):
            raise ValueError(f"data_parallel: {len(parts)} parts for {len(devices)} devices")
        if len(set(parts)) > 1:
            raise ValueError(
                f"data_parallel: keras.distribution splits every batch evenly; parts={parts} is uneven"
            )
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    if not model.built or not model.weights:
        return model
    replica = keras.models.clone_model(model)  # new weights, created replicated over the devices
    replica.set_weights(model.get_weights())
    return replica
