"""Cost of TransformerModel's host-side input checks on a MiniLM-sized forward (batch 8 x 128).

Paired timing: each round runs ``predict_on_batch`` with the checks and Keras's own
``predict_on_batch`` without them, alternately; prints the median of each and the overhead.
Run: ``KERAS_BACKEND=jax python benchmarks/input_checks.py``.
"""

import statistics
import time

import keras
import numpy as np

from bert4keras.models import build_transformer_model

MINILM = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
              intermediate_size=1536, hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2)


def main(rounds: int = 30, calls: int = 3) -> None:
    model = build_transformer_model(**MINILM)
    rng = np.random.default_rng(0)
    x = [rng.integers(0, MINILM["vocab_size"], (8, 128)).astype("int32"), np.zeros((8, 128), "int32")]
    checked, unchecked = model.predict_on_batch, lambda x: keras.Model.predict_on_batch(model, x)
    for run in (checked, unchecked):
        run(x)  # compile
    times = {"checked": [], "unchecked": []}
    for _ in range(rounds):
        for name, run in (("checked", checked), ("unchecked", unchecked)):
            start = time.perf_counter()
            for _ in range(calls):
                run(x)
            times[name].append((time.perf_counter() - start) / calls)
    start = time.perf_counter()
    for _ in range(1000):
        model.check_inputs(x)
    alone = (time.perf_counter() - start) / 1000
    a, b = statistics.median(times["checked"]), statistics.median(times["unchecked"])
    print(f"{keras.backend.backend()}: forward 8x128 unchecked {b * 1e3:.2f} ms, checked {a * 1e3:.2f} ms "
          f"(median of {rounds}); difference {100 * (a - b) / b:+.2f}%; "
          f"check_inputs alone {alone * 1e6:.0f} us = {100 * alone / b:.2f}% of the forward")


if __name__ == "__main__":
    main()
