"""Sample sentences from a masked language model by Gibbs sampling: mask one random
position, draw a token there from the MLM distribution, repeat
(https://kexue.fm/archives/8119).

Data: a starting sentence (or all-[MASK] of a random length). Model: a Chinese BERT with its
MLM head; with config_path = None a small randomly initialised Chinese BERT, whose samples
are random characters until a pretrained checkpoint is set below.
Run: python examples/basic_gibbs_sampling_via_mlm.py [--smoke]
Result: 10 sentences drawn after the burn-in (random text with the random model).
"""

import numpy as np

from bert4keras.models import build_transformer_model
from bert4keras.snippets import to_array
from bert4keras.tokenizers import Tokenizer
from examples_common import SMOKE, build, chinese_vocab

config_path = None  # e.g. 'chinese_L-12_H-768_A-12/bert_config.json'
checkpoint_path = None  # e.g. 'chinese_L-12_H-768_A-12/bert_model.ckpt'
dict_path = chinese_vocab()
init_sent = "科学技术是第一生产力。"  # or None: start from [MASK]s only
minlen, maxlen = 8, 32
steps = 20 if SMOKE else 2000
converged_steps = 10 if SMOKE else 200

tokenizer = Tokenizer(dict_path, do_lower_case=True)
model = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size, with_mlm=True)
rng = np.random.default_rng(0)

if init_sent is None:
    length = int(rng.integers(minlen, maxlen + 1))
    token_ids = tokenizer.tokens_to_ids(["[CLS]"] + ["[MASK]"] * length + ["[SEP]"])
    segment_ids = [0] * len(token_ids)
else:
    token_ids, segment_ids = tokenizer.encode(init_sent)
    length = len(token_ids) - 2

sentences = []
for step in range(steps):
    i = int(rng.integers(length)) + 1
    token_ids[i] = tokenizer._token_mask_id
    probas = np.asarray(model.predict_on_batch(to_array([token_ids], [segment_ids]))[0, i], "float64")
    token_ids[i] = int(rng.choice(len(probas), p=probas / probas.sum()))
    sentences.append(tokenizer.decode(token_ids))
    if (step + 1) % max(1, steps // 10) == 0:
        print(f"step {step + 1}/{steps}: {sentences[-1]}")

print("some samples after burn-in:")
for i in rng.choice(len(sentences) - converged_steps, size=10) + converged_steps:
    print(sentences[i])
