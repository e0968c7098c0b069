"""Multi-device layouts for bert4keras models through ``keras.distribution`` (JAX backend).

Data parallelism needs nothing model specific (``keras.distribution.DataParallel``).
For model parallelism, :func:`transformer_layout_map` shards the attention and
feed-forward kernels of every Transformer block Megatron-style by their layer names.
"""

from __future__ import annotations

import keras

__all__ = ["transformer_layout_map"]


def transformer_layout_map(device_mesh: "keras.distribution.DeviceMesh",
                           model_axis: str = "model") -> "keras.distribution.LayoutMap":
    """Shard q/k/v and the first feed-forward dense by output columns, the attention output
    and the second feed-forward dense by input rows, and the token embeddings by vocabulary
    rows along ``model_axis`` of ``device_mesh``; every other weight is replicated."""
    if model_axis not in device_mesh.axis_names:
        raise ValueError(f"device mesh axes {device_mesh.axis_names} have no {model_axis!r} axis")
    layout_map = keras.distribution.LayoutMap(device_mesh)
    columns, rows = (None, model_axis), (model_axis, None)
    layout_map[r"Embedding-Token/embeddings$"] = rows
    layout_map[r"MultiHead\w*Attention/[qkv]_dense/kernel$"] = columns
    layout_map[r"MultiHead\w*Attention/[qkv]_dense/bias$"] = (model_axis,)
    layout_map[r"MultiHead\w*Attention/o_dense/kernel$"] = rows
    layout_map[r"FeedForward/i\d+_dense/kernel$"] = columns
    layout_map[r"FeedForward/i\d+_dense/bias$"] = (model_axis,)
    layout_map[r"FeedForward/o_dense/kernel$"] = rows
    return layout_map
