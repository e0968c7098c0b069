"""Title generation for Chinese paper abstracts (CSL, from CLUE's CLGE) with BERT as a
seq2seq model (UniLM attention mask, https://kexue.fm/archives/6933), scored with BLEU and
ROUGE-1/2/L on the validation set after each epoch.

Data: CSL is not available offline. Files datasets/csl/{train,val,test}.tsv, one
"title<TAB>abstract" line each. Without the real files,
python examples/seq2seq_data.py csl datasets/csl writes files in that layout from People's
Daily headline / lead-paragraph pairs (real text, but news, not paper abstracts).
Metrics: character-level ROUGE-1/2/L and smoothed sentence BLEU from seq2seq_data.py (the
0.11.5 script used the rouge and nltk packages).
Model: a BERT with the simplified vocab; with config_path = None a small randomly
initialised Chinese BERT.
Decoding: AutoTitle is 0.11.5's AutoRegressiveDecoder; with use_engine = True (the
default) generate() calls self.cached_beam_search(bert, token_ids, topk), the
key/value-cached engine (docs/generation.md); False runs 0.11.5's self.beam_search.
Run: python examples/seq2seq_data.py csl datasets/csl   (only without the real files)
     python examples/task_seq2seq_autotitle_csl.py [--smoke]
Result: measured on format-valid sample data only; see examples/README.md.
"""

import os

import numpy as np

from bert4keras.backend import K, keras
from bert4keras.layers import Loss
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam
from bert4keras.snippets import AutoRegressiveDecoder, DataGenerator, open, sequence_padding
from bert4keras.tokenizers import Tokenizer, load_vocab
from examples_common import SMOKE, build, chinese_vocab
from seq2seq_data import generation_metrics, require_dataset

maxlen = 64 if SMOKE else 128
max_title_len = 32
batch_size = 8 if SMOKE else 16
epochs = 1 if SMOKE else 8
train_size, eval_size = (16, 4) if SMOKE else (None, None)  # None: the whole file
use_engine = True
config_path = None  # e.g. 'chinese_wwm_L-12_H-768_A-12/bert_config.json'
checkpoint_path = None  # e.g. 'chinese_wwm_L-12_H-768_A-12/bert_model.ckpt'
dict_path = chinese_vocab()
data_dir = os.path.join("datasets", "csl")
learning_rate = 1e-5 if config_path else 1e-3  # the random small BERT needs a larger step


def load_data(filename: str) -> list[tuple[str, str]]:
    """One "title<TAB>content" line -> (title, content)."""
    D = []
    with open(require_dataset(filename, "CSL", data_dir), encoding="utf-8") as f:
        for l in f:
            title, content = l.strip().split("\t")
            D.append((title, content))
    return D


train_data = load_data(os.path.join(data_dir, "train.tsv"))[:train_size]
valid_data = load_data(os.path.join(data_dir, "val.tsv"))[:eval_size]
test_data = load_data(os.path.join(data_dir, "test.tsv"))[:eval_size]

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


def evaluate(data, topk=1) -> dict[str, float]:
    """Mean character ROUGE-1/2/L and BLEU of the generated titles."""
    return generation_metrics([(autotitle.generate(content, topk), title) for title, content in data])


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


class Evaluator(keras.callbacks.Callback):
    """Keep the weights with the best validation BLEU."""

    def __init__(self):
        super().__init__()
        self.best_bleu = -1.0

    def on_epoch_end(self, epoch, logs=None):
        metrics = evaluate(valid_data)
        if metrics["bleu"] > self.best_bleu:
            self.best_bleu = metrics["bleu"]
            model.save_weights("best_model_csl.weights")
        print(f"valid: {format_metrics(metrics)}, best bleu {self.best_bleu:.4f}")


if __name__ == "__main__":
    train_generator = data_generator(train_data, batch_size)
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
              callbacks=[Evaluator()], verbose=2)
    model.load_weights("best_model_csl.weights")
    copy_length = round(np.mean([len(title) for title, _ in train_data]))
    baseline = generation_metrics([(content[:copy_length], title) for title, content in test_data])
    print(f"copy-the-input baseline (first {copy_length} characters): {format_metrics(baseline)}")
    print(f"final test: {format_metrics(evaluate(test_data))}")
