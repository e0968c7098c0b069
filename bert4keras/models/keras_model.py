"""The Keras model class that ``Transformer.build`` returns.

A functional ``keras.Model`` that checks host-side inputs before ``predict``,
``evaluate`` and ``fit`` hand them to a compiled step: inside a jitted step a
missing input or an out-of-range token id can no longer raise a readable
error (JAX silently returns NaN rows for ids past the table, PyTorch raises a
bare "index out of range").
"""

from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="bert4keras")
class TransformerModel(keras.Model):
    """Functional model whose ``predict``/``evaluate``/``fit`` validate their ``x``:
    every input is given (by position or name) and token ids fit their embedding."""

    def predict(self, x, *args, **kwargs):
        self.check_inputs(x)
        return super().predict(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self.check_inputs(x)
        return super().evaluate(x, *args, **kwargs)

    def fit(self, x=None, *args, **kwargs):
        self.check_inputs(x)
        return super().fit(x, *args, **kwargs)

    def generate(self, inputs, max_new_tokens: int, *, num_beams: int = 1, top_k: int | None = None,
                 top_p: float | None = None, temperature: float = 1.0, end_id: int | None = None,
                 min_new_tokens: int = 0, seed: int | None = None, stream: bool = False):
        """New token ids for each prompt (lists of ids), decoded with a key/value cache;
        see :func:`bert4keras.generation.generate` and docs/generation.md."""
        from bert4keras.generation import generate

        return generate(self, inputs, max_new_tokens, num_beams=num_beams, top_k=top_k,
                        top_p=top_p, temperature=temperature, end_id=end_id,
                        min_new_tokens=min_new_tokens, seed=seed, stream=stream)

    def check_inputs(self, x) -> None:
        """Raise ``ValueError`` naming the input when ``x`` (arrays, a list or a dict of
        arrays) lacks an input or holds token ids outside a vocabulary; other kinds
        of data (datasets, generators) pass unchecked."""
        names = [t.name for t in self.inputs]
        if isinstance(x, dict):
            missing = [n for n in names if n not in x]
            if missing:
                raise ValueError(f"model {self.name!r} is missing input(s) {missing}; "
                                 f"it takes {names}, got keys {sorted(x)}")
            arrays = [x[n] for n in names]
        else:
            arrays = list(x) if isinstance(x, (list, tuple)) else [x]
            if len(arrays) != len(names) and all(_is_array(a) for a in arrays):
                hint = ("; an encoder-decoder needs the decoder's token ids as well"
                        if any(n.startswith("Decoder-") for n in names) else "")
                raise ValueError(f"model {self.name!r} takes {len(names)} input(s) {names} "
                                 f"but got {len(arrays)}{hint}")
        for (index, vocab_size, layer_name) in self.token_inputs():
            if index < len(arrays) and isinstance(arrays[index], np.ndarray) and arrays[index].size:
                ids = arrays[index]
                low, high = int(ids.min()), int(ids.max())
                if low < 0 or high >= vocab_size:
                    bad = low if low < 0 else high
                    raise ValueError(
                        f"model {self.name!r}: input {names[index]!r} holds token id {bad}, "
                        f"outside the vocabulary [0, {vocab_size}) of layer {layer_name!r}")

    def token_inputs(self) -> list[tuple[int, int, str]]:
        """(input index, vocabulary size, layer name) for each embedding fed by a model input."""
        positions = {id(t): i for i, t in enumerate(self.inputs)}
        found = []
        for layer in self.layers:
            if not isinstance(layer, keras.layers.Embedding):
                continue
            for node in layer._inbound_nodes:
                for tensor in node.input_tensors[:1]:
                    if id(tensor) in positions:
                        found.append((positions[id(tensor)], layer.input_dim, layer.name))
        return found


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or hasattr(x, "shape") and hasattr(x, "dtype")
