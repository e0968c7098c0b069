"""Which characters made the sentiment classifier decide? Integrated gradients
(arXiv:1703.01365, https://kexue.fm/archives/7533) over the token embeddings, from the zero
vector to the real lookups, scored per character.

Data: a few review sentences. Model: the classifier that task_sentiment_albert.py trained
(it imports that script, which loads best_model.weights from the current directory).
Run: python examples/task_sentiment_albert.py [--smoke] first, then
     python examples/task_sentiment_integrated_gradients.py [--smoke]
Result: per-character importance in [0, 1] (L2 norm and max magnitude over the hidden axis)
for each sentence.
"""

import os

import numpy as np

from bert4keras.attribution import integrated_gradients, token_scores
from bert4keras.snippets import sequence_padding
from examples_common import SMOKE, fail

if not os.path.exists("best_model.weights"):
    fail("best_model.weights is not in the current directory",
         "run examples/task_sentiment_albert.py here first (with the same --smoke setting)")

from task_sentiment_albert import model, tokenizer  # noqa: E402  (loads best_model.weights)

steps = 8 if SMOKE else 50
texts = ["这家店真黑心", "图太乱了 有点看不懂重点  讲故事的时候很难让孩子集中",
         "这是一本很好看的书", "这是一本很糟糕的书"]

# one padded batch: one compiled gradient program for all sentences (the mask hides padding)
encoded = [tokenizer.encode(text) for text in texts]
inputs = [sequence_padding([t for t, _ in encoded]), sequence_padding([s for _, s in encoded])]
probas = model.predict(inputs, verbose=0)
labels = probas.argmax(axis=1)
attributions = integrated_gradients(model, inputs, target_index=labels, steps=steps, method="trapezoid")

for text, (token_ids, _), p, label, a in zip(texts, encoded, probas, labels, attributions):
    characters = [tokenizer.decode([t]) for t in token_ids[1:-1]]
    print(f"\n{text}  ->  {'positive' if label else 'negative'} ({p[label]:.3f})")
    for reduce in ("l2", "max"):
        scores = token_scores(a[1:len(token_ids) - 1], reduce=reduce)  # [CLS], [SEP], padding dropped
        print(reduce, [(c, round(float(s), 4)) for c, s in zip(characters, scores)])
