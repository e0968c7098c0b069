"""Article continuation with GPT2-ML, a Chinese GPT-2 (https://github.com/imcaspar/gpt2-ml,
https://kexue.fm/archives/7292): given a start, sample the rest of the article.

Model: GPT2-ML (`model='gpt2_ml'`: GPT-2 with the layer norm after the embeddings). With
config_path = None it is a small randomly initialised GPT2-ML over the standard 21,128-token
Chinese BERT vocab, so the continuation is random characters; set the three paths below for
the real 1.5B model (its vocab.txt is the same kind of character vocab, 。 is id 511 in both).
Decoding: the ArticleCompletion class is 0.11.5's AutoRegressiveDecoder; with use_engine =
True `generate` samples through the cached engine (`self.cached_random_sample(model,
token_ids, n, topp=topp)`, see docs/generation.md), False runs 0.11.5's `self.random_sample`.
Run: python examples/basic_language_model_gpt2_ml.py [--smoke]
Result: prints one sampled article that starts with 今天天气不错 and, with the real model,
reads like the original's samples (a paragraph about going running).
"""

import numpy as np

from bert4keras.models import build_transformer_model
from bert4keras.snippets import AutoRegressiveDecoder
from bert4keras.tokenizers import Tokenizer
from examples_common import SMOKE, build, chinese_vocab

use_engine = True
maxlen, minlen = (32, 16) if SMOKE else (256, 128)
config_path = None  # e.g. 'gpt2_ml/config.json'
checkpoint_path = None  # e.g. 'gpt2_ml/model.ckpt-100000'
dict_path = chinese_vocab()  # e.g. 'gpt2_ml/vocab.txt'

tokenizer = Tokenizer(dict_path, token_start=None, token_end=None, do_lower_case=True)
model = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size, model="gpt2_ml")


class ArticleCompletion(AutoRegressiveDecoder):
    """Continues an article by random sampling."""

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs, output_ids, states):
        token_ids = np.concatenate([inputs[0], output_ids], 1)
        return self.last_token(model).predict(token_ids)

    def generate(self, text: str, n: int = 1, topp: float = 0.95) -> list[str]:
        token_ids, _ = tokenizer.encode(text)
        if use_engine:
            results = self.cached_random_sample(model, token_ids, n, topp=topp)
        else:
            results = self.random_sample([token_ids], n, topp=topp)
        return [text + tokenizer.decode(ids) for ids in results]


article_completion = ArticleCompletion(start_id=None, end_id=tokenizer.token_to_id("。"), maxlen=maxlen,
                                       minlen=minlen)

if __name__ == "__main__":
    print(article_completion.generate("今天天气不错"))
