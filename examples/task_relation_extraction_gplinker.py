"""Relation (triple) extraction with GPLinker (https://kexue.fm/archives/8888), a TPLinker-like
design on GlobalPointer: one GlobalPointer scores subject and object spans (2 heads); per
predicate, one scores (subject head, object head) pairs and one (subject tail, object tail)
pairs. A triple is kept when its two spans and both links score above 0.

Data: DuIE 1.0 (http://ai.baidu.com/broad/download?dataset=sked, not available offline) in
data_dir: train_data.json / dev_data.json, JSON lines {"text", "spo_list": [{"subject",
"predicate", "object", ...}]}, and all_50_schemas, JSON lines {"predicate", ...}. For a run
without it: python examples/task_data.py duie datasets/duie  (format-valid sample data only).
Model: BERT (chinese_bert(): the small Chinese BERT pretraining/ makes, else a random one) +
EfficientGlobalPointer, sparse multi-label cross-entropy, Adam + EMA of the weights.
Run: python examples/task_relation_extraction_gplinker.py [--smoke]
Result: triple F1 on dev_data.json. 0.11.5 reported F1 0.827 on DuIE dev with BERT base; on the
sample data see examples/README.md.
"""

import json
import os

import numpy as np

from bert4keras.backend import K, keras, sparse_multilabel_categorical_crossentropy
from bert4keras.layers import EfficientGlobalPointer as GlobalPointer
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam, extend_with_exponential_moving_average
from bert4keras.snippets import DataGenerator, open, sequence_padding
from bert4keras.tokenizers import Tokenizer
from examples_common import SMOKE, build, chinese_bert, fail

maxlen = 32 if SMOKE else 128
batch_size = 8 if SMOKE else 32
epochs = 1 if SMOKE else 10
train_size, valid_size = (16, 8) if SMOKE else (None, None)  # None: all of it
max_labels = 8  # label slots per head, padded so every batch has one shape (>= triples per text)
head_size = 16 if SMOKE else 64
learning_rate = 1e-3  # for the small BERT; 0.11.5 used 1e-5 for BERT base
ema_momentum = 0.9 if SMOKE else 0.99  # 0.999 in 0.11.5, which needs 5,000+ steps to pay off
config_path, checkpoint_path, dict_path = chinese_bert()  # or a Google BERT's three files
data_dir = os.path.join("datasets", "duie")


def data_file(name: str) -> str:
    """A file of data_dir, or stop saying how to get it."""
    path = os.path.join(data_dir, name)
    if not os.path.exists(path):
        fail(f"the DuIE file {path!r} does not exist",
             f"set data_dir at the top of the script to the DuIE folder, or write sample data there: "
             f"python examples/task_data.py duie {data_dir}")
    return path


def load_data(filename: str) -> list[dict]:
    """JSON lines -> [{'text': text, 'spo_list': [(s, p, o), ...]}, ...]."""
    D = []
    with open(filename, encoding="utf-8") as f:
        for l in f:
            l = json.loads(l)
            D.append({"text": l["text"],
                      "spo_list": [(spo["subject"], spo["predicate"], spo["object"]) for spo in l["spo_list"]]})
    return D


train_data = load_data(data_file("train_data.json"))[:train_size]
valid_data = load_data(data_file("dev_data.json"))[:valid_size]
predicate2id, id2predicate = {}, {}
with open(data_file("all_50_schemas"), encoding="utf-8") as f:
    for l in f:
        l = json.loads(l)
        if l["predicate"] not in predicate2id:
            id2predicate[len(predicate2id)] = l["predicate"]
            predicate2id[l["predicate"]] = len(predicate2id)

tokenizer = Tokenizer(dict_path, do_lower_case=True)


def search(pattern, sequence):
    """First index of the sub-list `pattern` in `sequence`, or -1."""
    n = len(pattern)
    for i in range(len(sequence)):
        if sequence[i:i + n] == pattern:
            return i
    return -1


class data_generator(DataGenerator):
    """([token_ids, segment_ids], [entity, head, tail labels]); labels are (start, end) pairs per
    head, padded with (0, 0), which the loss ignores."""

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids = [], []
        batch_entity_labels, batch_head_labels, batch_tail_labels = [], [], []
        for is_end, d in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(d["text"], maxlen=maxlen)
            spoes = set()  # {(s head, s tail, p, o head, o tail)}
            for s, p, o in d["spo_list"]:
                s = tokenizer.encode(s)[0][1:-1]
                p = predicate2id[p]
                o = tokenizer.encode(o)[0][1:-1]
                sh = search(s, token_ids)
                oh = search(o, token_ids)
                if sh != -1 and oh != -1:
                    spoes.add((sh, sh + len(s) - 1, p, oh, oh + len(o) - 1))
            entity_labels = [set() for _ in range(2)]
            head_labels = [set() for _ in range(len(predicate2id))]
            tail_labels = [set() for _ in range(len(predicate2id))]
            for sh, st, p, oh, ot in spoes:
                entity_labels[0].add((sh, st))
                entity_labels[1].add((oh, ot))
                head_labels[p].add((sh, oh))
                tail_labels[p].add((st, ot))
            for label in entity_labels + head_labels + tail_labels:
                if not label:  # at least one label per head: (0, 0) is padding
                    label.add((0, 0))
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            for labels, batch in ((entity_labels, batch_entity_labels), (head_labels, batch_head_labels),
                                  (tail_labels, batch_tail_labels)):
                batch.append(sequence_padding([sorted(l)[:max_labels] for l in labels], length=max_labels))
            if len(batch_token_ids) == self.batch_size or is_end:
                yield [sequence_padding(batch_token_ids, length=maxlen),
                       sequence_padding(batch_segment_ids, length=maxlen)], \
                      [np.array(batch_entity_labels), np.array(batch_head_labels), np.array(batch_tail_labels)]
                batch_token_ids, batch_segment_ids = [], []
                batch_entity_labels, batch_head_labels, batch_tail_labels = [], [], []


def globalpointer_crossentropy(y_true, y_pred):
    """Sparse multi-label cross-entropy over each head's flattened (start, end) scores."""
    shape = K.shape(y_pred)
    y_true = y_true[..., 0] * K.cast(shape[2], K.floatx()) + y_true[..., 1]
    y_pred = K.reshape(y_pred, (shape[0], shape[1], -1))  # heads x (L * L); 0.11.5 wrote K.prod(shape[2:])
    loss = sparse_multilabel_categorical_crossentropy(y_true, y_pred, True)
    return K.mean(K.sum(loss, axis=1))


base = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size,
             return_keras_model=False)

entity_output = GlobalPointer(heads=2, head_size=head_size)(base.model.output)
head_output = GlobalPointer(heads=len(predicate2id), head_size=head_size, RoPE=False,
                            tril_mask=False)(base.model.output)
tail_output = GlobalPointer(heads=len(predicate2id), head_size=head_size, RoPE=False,
                            tril_mask=False)(base.model.output)
outputs = [entity_output, head_output, tail_output]

AdamEMA = extend_with_exponential_moving_average(Adam, name="AdamEMA")
optimizer = AdamEMA(learning_rate=learning_rate, ema_momentum=ema_momentum)
model = keras.models.Model(base.model.inputs, outputs)
model.compile(loss=globalpointer_crossentropy, optimizer=optimizer)


def extract_spoes(text: str, threshold: float = 0) -> list[tuple[str, str, str]]:
    """The (subject, predicate, object) triples the model finds in `text`."""
    tokens = tokenizer.tokenize(text, maxlen=maxlen)
    mapping = tokenizer.rematch(text, tokens)
    token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
    token_ids = sequence_padding([token_ids], length=maxlen)  # one compiled shape
    segment_ids = sequence_padding([segment_ids], length=maxlen)
    outputs = model.predict([token_ids, segment_ids], verbose=0)
    outputs = [o[0] for o in outputs]
    # [CLS], [SEP] and the padding are never a span
    outside = [0] + list(range(len(tokens) - 1, maxlen))
    outputs[0][:, outside] -= np.inf
    outputs[0][:, :, outside] -= np.inf
    subjects, objects = set(), set()
    for l, h, t in zip(*np.where(outputs[0] > threshold)):
        if l == 0:
            subjects.add((h, t))
        else:
            objects.add((h, t))
    spoes = set()
    for sh, st in subjects:
        for oh, ot in objects:
            p1s = np.where(outputs[1][:, sh, oh] > threshold)[0]
            p2s = np.where(outputs[2][:, st, ot] > threshold)[0]
            for p in set(p1s) & set(p2s):
                spoes.add((text[mapping[sh][0]:mapping[st][-1] + 1], id2predicate[p],
                           text[mapping[oh][0]:mapping[ot][-1] + 1]))
    return list(spoes)


class SPO(tuple):
    """A triple compared by its tokens, so spacing and case differences do not count."""

    def __init__(self, spo):
        self.spox = (tuple(tokenizer.tokenize(spo[0])), spo[1], tuple(tokenizer.tokenize(spo[2])))

    def __hash__(self):
        return self.spox.__hash__()

    def __eq__(self, spo):
        return self.spox == spo.spox


def evaluate(data) -> tuple[float, float, float]:
    """Triple-level (f1, precision, recall); writes each text's predictions to dev_pred.json."""
    X, Y, Z = 1e-10, 1e-10, 1e-10
    with open("dev_pred.json", "w", encoding="utf-8") as f:
        for d in data:
            R = set([SPO(spo) for spo in extract_spoes(d["text"])])
            T = set([SPO(spo) for spo in d["spo_list"]])
            X += len(R & T)
            Y += len(R)
            Z += len(T)
            f.write(json.dumps({"text": d["text"], "spo_list": list(T), "spo_list_pred": list(R),
                                "new": list(R - T), "lack": list(T - R)}, ensure_ascii=False) + "\n")
    return 2 * X / (Y + Z), X / Y, X / Z


class Evaluator(keras.callbacks.Callback):
    """Evaluate with the EMA weights after every epoch and keep the best."""

    def __init__(self):
        super().__init__()
        self.best_val_f1 = 0.0

    def on_epoch_end(self, epoch, logs=None):
        optimizer.apply_ema_weights()
        f1, precision, recall = evaluate(valid_data)
        if f1 >= self.best_val_f1:
            self.best_val_f1 = f1
            model.save_weights("best_model.weights.h5")
        optimizer.reset_old_weights()
        print(f"f1: {f1:.5f}, precision: {precision:.5f}, recall: {recall:.5f}, best f1: {self.best_val_f1:.5f}")


if __name__ == "__main__":
    train_generator = data_generator(train_data, batch_size)
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
              callbacks=[Evaluator()], verbose=2)
    model.load_weights("best_model.weights.h5")  # the best EMA weights
    print(f"final dev f1: {evaluate(valid_data)[0]:.5f} (baseline: no triples, f1 0.00000)")
