"""Relation (triple) extraction with the "half-pointer, half-tagging" model
(https://kexue.fm/archives/7161): P(s, p, o) = P(s) P(o, p | s). Two sigmoid pointers mark
subject starts and ends; one subject (its start and end vectors) conditions a LayerNorm, and for
every predicate two more pointers mark the object's start and end.

Data: DuIE 1.0 (http://ai.baidu.com/broad/download?dataset=sked, not available offline) in
data_dir: train_data.json / dev_data.json, JSON lines {"text", "spo_list": [{"subject",
"predicate", "object", ...}]}, and all_50_schemas, JSON lines {"predicate", ...}. For a run
without it: python examples/task_data.py duie datasets/duie  (format-valid sample data only).
Model: BERT (chinese_bert(): the small Chinese BERT pretraining/ makes, else a random one) with
Adam + EMA of the weights, evaluated with the EMA weights.
Run: python examples/task_relation_extraction.py [--smoke]
Result: triple F1 on dev_data.json. 0.11.5 reported F1 0.822 on DuIE dev with BERT base (20
epochs); on the sample data see examples/README.md.
"""

import json
import os

import numpy as np

from bert4keras.backend import K, batch_gather, keras
from bert4keras.layers import LayerNormalization, Loss
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam, extend_with_exponential_moving_average
from bert4keras.snippets import DataGenerator, open, sequence_padding
from bert4keras.tokenizers import Tokenizer
from examples_common import SMOKE, build, chinese_bert, fail

maxlen = 32 if SMOKE else 128
batch_size = 8 if SMOKE else 32
epochs = 1 if SMOKE else 10
train_size, valid_size = (16, 8) if SMOKE else (None, None)  # None: all of it
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
    """[token_ids, segment_ids, subject_labels, subject_ids, object_labels] padded to maxlen;
    each text contributes one randomly chosen subject and the objects it leads to."""

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids = [], []
        batch_subject_labels, batch_subject_ids, batch_object_labels = [], [], []
        for is_end, d in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(d["text"], maxlen=maxlen)
            spoes = {}  # {(s start, s end): [(o start, o end, p), ...]}
            for s, p, o in d["spo_list"]:
                s = tokenizer.encode(s)[0][1:-1]
                p = predicate2id[p]
                o = tokenizer.encode(o)[0][1:-1]
                s_idx = search(s, token_ids)
                o_idx = search(o, token_ids)
                if s_idx != -1 and o_idx != -1:
                    s = (s_idx, s_idx + len(s) - 1)
                    o = (o_idx, o_idx + len(o) - 1, p)
                    spoes.setdefault(s, []).append(o)
            if spoes:
                subject_labels = np.zeros((len(token_ids), 2))
                for s in spoes:
                    subject_labels[s[0], 0] = 1
                    subject_labels[s[1], 1] = 1
                # a random start and a random end after it: sometimes not a real subject, on purpose
                # (0.11.5's comment), so the object pointers also learn to point nowhere
                start, end = np.array(list(spoes.keys())).T
                start = np.random.choice(start)
                end = np.random.choice(end[end >= start])
                subject_ids = (start, end)
                object_labels = np.zeros((len(token_ids), len(predicate2id), 2))
                for o in spoes.get(subject_ids, []):
                    object_labels[o[0], o[2], 0] = 1
                    object_labels[o[1], o[2], 1] = 1
                batch_token_ids.append(token_ids)
                batch_segment_ids.append(segment_ids)
                batch_subject_labels.append(subject_labels)
                batch_subject_ids.append(subject_ids)
                batch_object_labels.append(object_labels)
            if batch_token_ids and (len(batch_token_ids) == self.batch_size or is_end):
                yield [sequence_padding(batch_token_ids, length=maxlen),
                       sequence_padding(batch_segment_ids, length=maxlen),
                       sequence_padding(batch_subject_labels, length=maxlen),
                       np.array(batch_subject_ids),
                       sequence_padding(batch_object_labels, length=maxlen)], None
                batch_token_ids, batch_segment_ids = [], []
                batch_subject_labels, batch_subject_ids, batch_object_labels = [], [], []


def extract_subject(inputs):
    """The concatenated start and end vectors of each sample's subject."""
    output, subject_ids = inputs
    start = batch_gather(output, subject_ids[:, :1])
    end = batch_gather(output, subject_ids[:, 1:])
    subject = K.concatenate([start, end], 2)
    return subject[:, 0]


subject_labels = keras.layers.Input(shape=(None, 2), name="Subject-Labels")
subject_ids = keras.layers.Input(shape=(2,), dtype="int32", name="Subject-Ids")
object_labels = keras.layers.Input(shape=(None, len(predicate2id), 2), name="Object-Labels")

bert = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size,
             return_keras_model=False)

# subject pointers
output = keras.layers.Dense(units=2, activation="sigmoid", kernel_initializer=bert.initializer)(bert.model.output)
subject_preds = keras.layers.Lambda(lambda x: x**2)(output)
subject_model = keras.models.Model(bert.model.inputs, subject_preds)

# object pointers per predicate, given the subject through a conditional LayerNorm that takes the
# place of the last block's LayerNorm (0.11.5 took `layers[-2]`, the input of that LayerNorm)
output = bert.model.get_layer(f"Transformer-{bert.num_hidden_layers - 1}-FeedForward-Add").output
subject = keras.layers.Lambda(extract_subject)([output, subject_ids])
output = LayerNormalization(conditional=True)([output, subject])
output = keras.layers.Dense(units=len(predicate2id) * 2, activation="sigmoid",
                            kernel_initializer=bert.initializer)(output)
output = keras.layers.Lambda(lambda x: x**4)(output)
object_preds = keras.layers.Reshape((-1, len(predicate2id), 2))(output)
object_model = keras.models.Model(bert.model.inputs + [subject_ids], object_preds)


class TotalLoss(Loss):
    """Subject plus object binary cross-entropy, each a mean over the real (non-padding) tokens."""

    def compute_loss(self, inputs, mask=None):
        subject_labels, object_labels, subject_preds, object_preds, token_ids = inputs
        mask = K.cast(K.not_equal(token_ids, 0), K.floatx())
        subject_loss = K.mean(K.binary_crossentropy(subject_labels, subject_preds), 2)
        subject_loss = K.sum(subject_loss * mask) / K.sum(mask)
        object_loss = K.sum(K.mean(K.binary_crossentropy(object_labels, object_preds), 3), 2)
        object_loss = K.sum(object_loss * mask) / K.sum(mask)
        return subject_loss + object_loss


subject_preds, object_preds = TotalLoss([2, 3])(
    [subject_labels, object_labels, subject_preds, object_preds, bert.model.inputs[0]])
train_model = keras.models.Model(bert.model.inputs + [subject_labels, subject_ids, object_labels],
                                 [subject_preds, object_preds])

AdamEMA = extend_with_exponential_moving_average(Adam, name="AdamEMA")
optimizer = AdamEMA(learning_rate=learning_rate, ema_momentum=ema_momentum)
train_model.compile(optimizer=optimizer)


def extract_spoes(text: str) -> list[tuple[str, str, str]]:
    """The (subject, predicate, object) triples the model finds in `text`."""
    tokens = tokenizer.tokenize(text, maxlen=maxlen)
    mapping = tokenizer.rematch(text, tokens)
    token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
    # padded to maxlen (one compiled shape); [CLS], [SEP] and the padding are never a span
    token_ids = sequence_padding([token_ids], length=maxlen)
    segment_ids = sequence_padding([segment_ids], length=maxlen)
    outside = [0] + list(range(len(tokens) - 1, maxlen))
    subject_preds = subject_model.predict([token_ids, segment_ids], verbose=0)
    subject_preds[:, outside] *= 0
    start = np.where(subject_preds[0, :, 0] > 0.6)[0]
    end = np.where(subject_preds[0, :, 1] > 0.5)[0]
    subjects = []
    for i in start:
        j = end[end >= i]
        if len(j) > 0:
            subjects.append((i, j[0]))
    if not subjects:
        return []
    spoes = []
    token_ids = np.repeat(token_ids, len(subjects), 0)
    segment_ids = np.repeat(segment_ids, len(subjects), 0)
    subjects = np.array(subjects)
    object_preds = object_model.predict([token_ids, segment_ids, subjects], verbose=0)
    object_preds[:, outside] *= 0
    for subject, object_pred in zip(subjects, object_preds):
        start = np.where(object_pred[:, :, 0] > 0.6)
        end = np.where(object_pred[:, :, 1] > 0.5)
        for _start, predicate1 in zip(*start):
            for _end, predicate2 in zip(*end):
                if _start <= _end and predicate1 == predicate2:
                    spoes.append(((mapping[subject[0]][0], mapping[subject[1]][-1]), predicate1,
                                  (mapping[_start][0], mapping[_end][-1])))
                    break
    return [(text[s[0]:s[1] + 1], id2predicate[p], text[o[0]:o[1] + 1]) for s, p, o in spoes]


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
            train_model.save_weights("best_model.weights.h5")
        optimizer.reset_old_weights()
        print(f"f1: {f1:.5f}, precision: {precision:.5f}, recall: {recall:.5f}, best f1: {self.best_val_f1:.5f}")


if __name__ == "__main__":
    train_generator = data_generator(train_data, batch_size)
    train_model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
                    callbacks=[Evaluator()], verbose=2)
    train_model.load_weights("best_model.weights.h5")  # the best EMA weights
    print(f"final dev f1: {evaluate(valid_data)[0]:.5f} (baseline: no triples, f1 0.00000)")
