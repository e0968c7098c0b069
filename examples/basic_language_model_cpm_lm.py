"""Few-shot prompting of CPM-LM, Tsinghua's Chinese GPT-2 (2.6B parameters,
https://github.com/TsinghuaAI/CPM-Generate, https://kexue.fm/archives/7912): common-sense
questions, word translation, subject and triple extraction are written as text to continue.

Model: a GPT-2 (`model='gpt2'`). With config_path = None it is a small randomly initialised
GPT-2 and the SentencePiece vocab is trained here on People's Daily 1998 text (CPM's own
vocab is not available offline), so the continuations are random characters; set the three
CPM paths below for the real model. The original pre-segmented words with jieba, which this
environment does not have: pre_tokenize only maps spaces and newlines to CPM's marks (with
the real vocab, `jieba.cut(text)` in pre_tokenize reproduces the original).
Decoding: the TextExpansion class is 0.11.5's AutoRegressiveDecoder; with use_engine = True
`generate` samples through the cached engine (`self.cached_random_sample(model, token_ids, n,
topp=topp)`, see docs/generation.md), False runs 0.11.5's `self.random_sample`.
Run: python examples/basic_language_model_cpm_lm.py [--smoke]
Result: prints the four continuations (the expected answers with the real CPM: 北京, bird,
杨振宁, 张红,体重,140斤).
"""

import os

import numpy as np

from bert4keras.models import build_transformer_model
from bert4keras.snippets import AutoRegressiveDecoder
from bert4keras.tokenizers import SpTokenizer
from examples_common import SMOKE, build
from lm_data import people_daily_paragraphs, train_sentencepiece

use_engine = True
maxlen = 8 if SMOKE else 16
config_path = None  # e.g. 'CPM_LM_2.6B_TF/config.json'
checkpoint_path = None  # e.g. 'CPM_LM_2.6B_TF/model.ckpt'
spm_path = None  # e.g. 'CPM_LM_2.6B_TF/chinese_vocab.model'
demo_vocab_size, demo_corpus_size = (4000, 2000) if SMOKE else (8000, 19484)


def pre_tokenize(text: str) -> list[str]:
    """Spaces and newlines become CPM's marks ▂ and ▃ (the model writes a newline as <cls>)."""
    return [text.replace(" ", "\u2582").replace("\n", "\u2583")]


if spm_path is None:
    texts = [pre_tokenize(p)[0] for p in people_daily_paragraphs()[:demo_corpus_size]]
    spm_path = train_sentencepiece(os.path.abspath(f"cpm_demo_{demo_vocab_size}.model"), texts,
                                   demo_vocab_size, ["<cls>", "\u2582", "\u2583"])

tokenizer = SpTokenizer(spm_path, token_start=None, token_end=None, pre_tokenize=pre_tokenize,
                        token_translate={"\u2583": "<cls>"})
model = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size, model="gpt2")


class TextExpansion(AutoRegressiveDecoder):
    """Continues a text by random sampling."""

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs, output_ids, states):
        token_ids = np.concatenate([inputs[0], output_ids], 1)
        return self.last_token(model).predict(token_ids)

    def generate(self, text: str, n: int = 1, topp: float = 0.95, temperature: float = 1) -> list[str]:
        """Sampled continuations; for few-shot answers alone, beam search is the steadier choice."""
        token_ids, _ = tokenizer.encode(text)
        if use_engine:
            results = self.cached_random_sample(model, token_ids, n, topp=topp, temperature=temperature)
        else:
            results = self.random_sample([token_ids], n, topp=topp, temperature=temperature)
        results = [token_ids + [int(i) for i in ids] for ids in results]
        return [self.post_replace(tokenizer.decode(ids)) for ids in results]

    def post_replace(self, text: str) -> str:
        for s, t in [(" ", ""), ("\u2582", " "), ("\u2583", "\n")]:
            text = text.replace(s, t)
        return text


text_expansion = TextExpansion(start_id=None, end_id=tokenizer.token_to_id("<cls>"), maxlen=maxlen)

queries = {
    "common sense (CPM: 北京)": "美国的首都是华盛顿\n法国的首都是巴黎\n日本的首都是东京\n中国的首都是",
    "word translation (CPM: bird)": "狗 dog\n猫 cat\n猪 pig\n鸟 ",
    "subject extraction (CPM: 杨振宁)": "从1931年起，华罗庚在清华大学边学习边工作 华罗庚\n"
                                       "在一间简陋的房间里，陈景润攻克了“哥德巴赫猜想” 陈景润\n"
                                       "在这里，丘成桐得到IBM奖学金 丘成桐\n"
                                       "杨振宁在粒子物理学、统计力学和凝聚态物理等领域作出里程碑性贡献 ",
    "triple extraction (CPM: 张红,体重,140斤)": "姚明的身高是211cm，是很多人心目中的偶像。 ->姚明，身高，211cm\n"
                                                "毛泽东是绍兴人，早年在长沙读书。->毛泽东，出生地，绍兴\n"
                                                "北京是中国的首都。->中国，首都，北京\n"
                                                "张红的体重达到了140斤，她很苦恼。->",
}

if __name__ == "__main__":
    for task, query in queries.items():
        print(f"{task}: {text_expansion.generate(query, 1)[0].splitlines()[-1]!r}")
