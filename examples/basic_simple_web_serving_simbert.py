"""SimBERT's similar-sentence generation as a small web service, with
`bert4keras.snippets.WebServing` (0.11.5's helper for quick tests, not for production
traffic; `bert4keras serve` is the production server, see docs/serving.md).
GET /gen_synonyms?text=苹果多少钱一斤&n=100&k=20 samples n sentences from the UniLM head
(https://kexue.fm/archives/7427), ranks them by cosine similarity of the pooled encoder
output to the input and answers {"code": 0, "desc": "succeeded", "data": [k sentences]}.

Model: SimBERT (BERT with `with_pool='linear'`, `application='unilm'`). With config_path = None
it is a small randomly initialised BERT over the standard 21,128-token Chinese vocab, so the
answers are random strings; set the three paths below for the real SimBERT.
Decoding: the SynonymsGenerator class is 0.11.5's AutoRegressiveDecoder; with use_engine =
True `generate` samples through the cached engine (`self.cached_random_sample(bert.model,
token_ids, n, topp=topp)`, see docs/generation.md), False runs 0.11.5's `self.random_sample`.
Serving: `server='wsgiref'` needs nothing beyond bottle (0.11.5's default, 'paste', needs the
paste package); the port is 8864 unless BERT4KERAS_PORT is set.
Run: python examples/basic_simple_web_serving_simbert.py [--smoke], then open
http://127.0.0.1:8864/gen_synonyms?text=苹果多少钱一斤
Result: serves until interrupted; prints the address it listens on.
"""

import os

import numpy as np

from bert4keras.backend import keras
from bert4keras.models import build_transformer_model
from bert4keras.snippets import AutoRegressiveDecoder, WebServing, sequence_padding
from bert4keras.tokenizers import Tokenizer
from examples_common import build, chinese_vocab

use_engine = True
maxlen = 32
port = int(os.environ.get("BERT4KERAS_PORT", 8864))
config_path = None  # e.g. 'chinese_simbert_L-12_H-768_A-12/bert_config.json'
checkpoint_path = None  # e.g. 'chinese_simbert_L-12_H-768_A-12/bert_model.ckpt'
dict_path = chinese_vocab()  # e.g. 'chinese_simbert_L-12_H-768_A-12/vocab.txt'

tokenizer = Tokenizer(dict_path, do_lower_case=True)
bert = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size, with_pool="linear",
             application="unilm", return_keras_model=False)
encoder = keras.models.Model(bert.model.inputs, bert.model.outputs[0])
seq2seq = keras.models.Model(bert.model.inputs, bert.model.outputs[1])


class SynonymsGenerator(AutoRegressiveDecoder):
    """Samples sentences that say the same as the input (the UniLM half of SimBERT)."""

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs, output_ids, states):
        token_ids, segment_ids = inputs
        token_ids = np.concatenate([token_ids, output_ids], 1)
        segment_ids = np.concatenate([segment_ids, np.ones_like(output_ids)], 1)
        return self.last_token(seq2seq).predict([token_ids, segment_ids])

    def generate(self, text: str, n: int = 1, topp: float = 0.95) -> list[str]:
        token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
        if use_engine:
            output_ids = self.cached_random_sample(bert.model, token_ids, n, topp=topp)
        else:
            output_ids = self.random_sample([token_ids, segment_ids], n, topp=topp)
        return [tokenizer.decode(ids) for ids in output_ids]


synonyms_generator = SynonymsGenerator(start_id=None, end_id=tokenizer._token_end_id, maxlen=maxlen)


def gen_synonyms(text: str, n: int = 100, k: int = 20) -> list[str]:
    """Sample n sentences like ``text`` and return the k whose encodings are closest to it."""
    r = synonyms_generator.generate(text, n)
    r = [text] + [i for i in set(r) if i != text]
    X, S = [], []
    for t in r:
        x, s = tokenizer.encode(t)
        X.append(x)
        S.append(s)
    Z = encoder.predict([sequence_padding(X), sequence_padding(S)], verbose=0)
    Z /= (Z ** 2).sum(axis=1, keepdims=True) ** 0.5
    argsort = np.dot(Z[1:], -Z[0]).argsort()
    return [r[i + 1] for i in argsort[:k]]


if __name__ == "__main__":
    arguments = {"text": (None, True), "n": (int, False), "k": (int, False)}
    web = WebServing(port=port, server="wsgiref")
    web.route("/gen_synonyms", gen_synonyms, arguments)
    print(f"serving on http://127.0.0.1:{port}/gen_synonyms?text=苹果多少钱一斤", flush=True)
    web.start()
