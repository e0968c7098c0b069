"""Sentence-pair similarity (LCQMC: do two questions mean the same?) with BERT: both
sentences in one input (segment ids 0 / 1), the pooled [CLS] vector into a softmax.

Data: LCQMC (not available offline). Files datasets/lcqmc/lcqmc.{train,valid,test}.data,
one "text1<TAB>text2<TAB>label" line per pair, label 1 when they mean the same. Without the
real files, python examples/sample_data.py lcqmc writes format-valid synthetic pairs.
Model: a BERT; with config_path = None a small randomly initialised Chinese BERT.
Run: python examples/task_sentence_similarity_lcqmc.py [--smoke]
Result: test accuracy; measured on format-valid sample data only (examples/README.md).
"""

import os

import numpy as np

from bert4keras.backend import keras, set_gelu
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam
from bert4keras.snippets import DataGenerator, open, sequence_padding
from bert4keras.tokenizers import Tokenizer
from examples_common import SMOKE, build, chinese_vocab, fail

set_gelu("tanh")

maxlen = 64 if SMOKE else 128
batch_size = 32 if SMOKE else 64
epochs = 1 if SMOKE else 5
config_path = None  # e.g. 'chinese_wwm_L-12_H-768_A-12/bert_config.json'
checkpoint_path = None  # e.g. 'chinese_wwm_L-12_H-768_A-12/bert_model.ckpt'
dict_path = chinese_vocab()
data_dir = os.path.join("datasets", "lcqmc")


def load_data(filename: str) -> list[tuple[str, str, int]]:
    """text1<TAB>text2<TAB>label lines -> [(text1, text2, label), ...]."""
    if not os.path.exists(filename):
        fail(f"the LCQMC file {filename!r} does not exist",
             f"put the LCQMC files in {data_dir}/ or write sample pairs: python examples/sample_data.py lcqmc")
    data = []
    with open(filename, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or parts[2] not in ("0", "1"):
                fail(f"{filename} line {number} is not text1<TAB>text2<TAB>0|1: {line[:80]!r}",
                     "fix or drop that line")
            data.append((parts[0], parts[1], int(parts[2])))
    return data


train_data = load_data(os.path.join(data_dir, "lcqmc.train.data"))
valid_data = load_data(os.path.join(data_dir, "lcqmc.valid.data"))
test_data = load_data(os.path.join(data_dir, "lcqmc.test.data"))
if SMOKE:
    train_data, valid_data, test_data = train_data[:64], valid_data[:32], test_data[:32]

tokenizer = Tokenizer(dict_path, do_lower_case=True)


class data_generator(DataGenerator):
    """Batches of ([token_ids, segment_ids], labels) for sentence pairs, padded to maxlen."""

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids, batch_labels = [], [], []
        for is_end, (text1, text2, label) in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(text1, text2, maxlen=maxlen)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            batch_labels.append([label])
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids, length=maxlen)
                batch_segment_ids = sequence_padding(batch_segment_ids, length=maxlen)
                batch_labels = sequence_padding(batch_labels)
                yield [batch_token_ids, batch_segment_ids], batch_labels
                batch_token_ids, batch_segment_ids, batch_labels = [], [], []


bert = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size,
             with_pool=True, return_keras_model=False)
output = keras.layers.Dropout(rate=0.1)(bert.model.output)
output = keras.layers.Dense(units=2, activation="softmax", kernel_initializer=bert.initializer)(output)
model = keras.models.Model(bert.model.input, output)
model.compile(loss="sparse_categorical_crossentropy", optimizer=Adam(2e-5 if config_path else 5e-4),
              metrics=["accuracy"])

train_generator = data_generator(train_data, batch_size)
valid_generator = data_generator(valid_data, batch_size)
test_generator = data_generator(test_data, batch_size)


def evaluate(data) -> float:
    total, right = 0.0, 0.0
    for x_true, y_true in data:
        y_pred = model.predict(x_true, verbose=0).argmax(axis=1)
        y_true = y_true[:, 0]
        total += len(y_true)
        right += (y_true == y_pred).sum()
    return right / total


class Evaluator(keras.callbacks.Callback):
    """Keep the weights with the best validation accuracy."""

    def __init__(self):
        super().__init__()
        self.best_val_acc = 0.0

    def on_epoch_end(self, epoch, logs=None):
        val_acc = evaluate(valid_generator)
        if val_acc >= self.best_val_acc:
            self.best_val_acc = val_acc
            model.save_weights("best_model_lcqmc.weights")
        print(f"val_acc: {val_acc:.5f}, best_val_acc: {self.best_val_acc:.5f}, test_acc: {evaluate(test_generator):.5f}")


if __name__ == "__main__":
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
              callbacks=[Evaluator()], verbose=2)
    model.load_weights("best_model_lcqmc.weights")
    share = np.mean([label for _, _, label in test_data])
    print(f"final test acc: {evaluate(test_generator):.5f} (majority class: {max(share, 1 - share):.5f})")
