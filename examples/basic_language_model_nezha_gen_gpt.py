"""Article continuation with NEZHA-Gen, Huawei's Chinese GPT (a NEZHA encoder with a causal
mask, https://github.com/bojone/chinese-gen): given a start, sample the rest of the article.

Model: NEZHA with `application='lm'` and no segment input (`segment_vocab_size=0`). With
config_path = None it is a small randomly initialised NEZHA over the standard 21,128-token
Chinese BERT vocab (the one NEZHA-Gen uses), so the continuation is random characters; set
the three paths below for the real base model.
Decoding: the ArticleCompletion class is 0.11.5's AutoRegressiveDecoder; with use_engine =
True `generate` samples through the cached engine (`self.cached_random_sample(model,
token_ids, n, topp=topp)`, see docs/generation.md), False runs 0.11.5's `self.random_sample`.
Run: python examples/basic_language_model_nezha_gen_gpt.py [--smoke]
Result: prints one sampled article that starts with 今天天气不错 (with the real model, a
weather report, as in the original's samples).
"""

import numpy as np

from bert4keras.models import build_transformer_model
from bert4keras.snippets import AutoRegressiveDecoder
from bert4keras.tokenizers import Tokenizer
from examples_common import SMOKE, build, chinese_vocab

use_engine = True
maxlen, minlen = (32, 16) if SMOKE else (256, 128)
config_path = None  # e.g. 'chinese_nezha_gpt_L-12_H-768_A-12/config.json'
checkpoint_path = None  # e.g. 'chinese_nezha_gpt_L-12_H-768_A-12/gpt.ckpt'
dict_path = chinese_vocab()  # e.g. 'chinese_nezha_gpt_L-12_H-768_A-12/vocab.txt'

tokenizer = Tokenizer(dict_path, do_lower_case=True)
model = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size, model="nezha",
              segment_vocab_size=0, application="lm")


class ArticleCompletion(AutoRegressiveDecoder):
    """Continues an article by random sampling."""

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs, output_ids, states):
        token_ids = np.concatenate([inputs[0], output_ids], 1)
        return self.last_token(model).predict(token_ids)

    def generate(self, text: str, n: int = 1, topp: float = 0.95) -> list[str]:
        token_ids = tokenizer.encode(text)[0][:-1]  # [CLS] + text, without the closing [SEP]
        if use_engine:
            results = self.cached_random_sample(model, token_ids, n, topp=topp)
        else:
            results = self.random_sample([token_ids], n, topp=topp)
        return [text + tokenizer.decode(ids) for ids in results]


article_completion = ArticleCompletion(start_id=None, end_id=tokenizer.token_to_id("。"), maxlen=maxlen,
                                       minlen=minlen)

if __name__ == "__main__":
    print(article_completion.generate("今天天气不错"))
