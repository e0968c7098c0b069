"""The Keras model class that ``Transformer.build`` returns: a functional ``keras.Model``
whose entry points check host-side inputs first (:mod:`bert4keras.input_checks`), with the
Keras 2 methods of 0.11.5 scripts and ``generate``."""

from __future__ import annotations

import keras

from bert4keras._keras2_compat import Keras2ModelMixin
from bert4keras.input_checks import InputChecks, _plan


@keras.saving.register_keras_serializable(package="bert4keras")
class TransformerModel(InputChecks, Keras2ModelMixin, keras.Model):
    """Functional model whose entry points validate numpy inputs on the host (see
    :class:`bert4keras.input_checks.InputChecks`) and which decodes with ``generate``."""

    def generate(self, inputs, max_new_tokens: int, *, num_beams: int = 1, top_k: int | None = None,
                 top_p: float | None = None, temperature: float = 1.0, end_id: int | None = None,
                 min_new_tokens: int = 0, seed: int | None = None, stream: bool = False):
        """New token ids for each prompt (lists of ids), decoded with a key/value cache;
        see :func:`bert4keras.generation.generate` and docs/generation.md."""
        from bert4keras.generation import generate

        return generate(self, inputs, max_new_tokens, num_beams=num_beams, top_k=top_k,
                        top_p=top_p, temperature=temperature, end_id=end_id,
                        min_new_tokens=min_new_tokens, seed=seed, stream=stream)

    def token_inputs(self) -> list[tuple[int, int, str]]:
        """(input index, vocabulary size, layer name) for each embedding fed by a model input."""
        return [(i, size, layer) for i, size, layer, what in _plan(self).ids if what == "token id"]
