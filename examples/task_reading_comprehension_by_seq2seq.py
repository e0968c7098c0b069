"""Reading comprehension as seq2seq (UniLM): [CLS] passage [SEP] question [SEP] answer [SEP]
with the question and answer in segment 1. At answer time every passage of a question is
decoded together: a passage whose first choice is the end token has no answer and is
dropped, the others vote (sum of p^2 / (sum of p + 1)), and in the extractive mode a token
is allowed only if it continues an n-gram of some passage. 0.11.5 reached about 0.77 on
SogouQA's held-out third after 8 epochs (accuracy 0.726, F1 0.814) with BERT base.

Data: WebQA and SogouQA (https://github.com/bojone/dgcnn_for_reading_comprehension) are not
available offline. Files datasets/qa/WebQA.json and datasets/qa/SogouQA.json: a JSON list of
{"question": ..., "passages": [{"passage": ..., "answer": ...}, ...]} ('' when a passage has
no answer; several answers separated by spaces). A fixed-seed shuffle holds out a third of
SogouQA as validation (0.11.5 saved that order to ../random_order.json); training is the
other two thirds twice plus WebQA. Without the real files,
python examples/seq2seq_data.py webqa datasets/qa writes templated records in that layout.
Model: a BERT with the simplified vocab; with config_path = None a small randomly
initialised Chinese BERT.
Decoding: ReadingComprehension is 0.11.5's AutoRegressiveDecoder with its own predict
(several passages per step, the vote, the n-gram constraint), so it runs
self.beam_search: the cached engine (cached_beam_search) decodes one prompt with the
standard predict and cannot express this one.
Run: python examples/seq2seq_data.py webqa datasets/qa   (only without the real files)
     python examples/task_reading_comprehension_by_seq2seq.py [--smoke]
Result: accuracy (the answer is one of the gold answers), best character F1 and their mean
on the validation questions; measured on format-valid sample data only (examples/README.md).
"""

import json
import os
import re

import numpy as np

from bert4keras.backend import K, keras
from bert4keras.layers import Loss
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam
from bert4keras.snippets import AutoRegressiveDecoder, DataGenerator, open, sequence_padding
from bert4keras.tokenizers import Tokenizer, load_vocab
from examples_common import SMOKE, build, chinese_vocab
from seq2seq_data import require_dataset

max_p_len = 64 if SMOKE else 256
max_q_len = 16 if SMOKE else 64
max_a_len = 8 if SMOKE else 32
max_qa_len = max_q_len + max_a_len
batch_size = 8 if SMOKE else 32
epochs = 1 if SMOKE else 8
train_size, eval_size = (16, 4) if SMOKE else (None, None)  # None: all
config_path = None  # e.g. 'chinese_L-12_H-768_A-12/bert_config.json'
checkpoint_path = None  # e.g. 'chinese_L-12_H-768_A-12/bert_model.ckpt'
dict_path = chinese_vocab()
data_dir = os.path.join("datasets", "qa")
learning_rate = 1e-5 if config_path else 1e-3  # the random small BERT needs a larger step

webqa_data = json.load(open(require_dataset(os.path.join(data_dir, "WebQA.json"), "WebQA/SogouQA", data_dir)))
sogou_data = json.load(open(require_dataset(os.path.join(data_dir, "SogouQA.json"), "WebQA/SogouQA", data_dir)))

random_order = np.random.RandomState(42).permutation(len(sogou_data))
train_data = [sogou_data[j] for i, j in enumerate(random_order) if i % 3 != 0]
valid_data = [sogou_data[j] for i, j in enumerate(random_order) if i % 3 == 0][:eval_size]
train_data.extend(train_data)
train_data.extend(webqa_data)  # SogouQA and WebQA mixed 2:1
train_data = train_data[:train_size]

token_dict, keep_tokens = load_vocab(dict_path=dict_path, simplified=True,
                                     startswith=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
tokenizer = Tokenizer(token_dict, do_lower_case=True)


class data_generator(DataGenerator):
    """Batches of [CLS] passage [SEP] question [SEP] answer [SEP] (one random passage per
    question; the answer is '' when the passage does not hold it)."""

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids = [], []
        for is_end, D in self.sample(random):
            question = D["question"]
            answers = [p["answer"] for p in D["passages"] if p["answer"]]
            passage = np.random.choice(D["passages"])["passage"]
            passage = re.sub(" |、|；|，", ",", passage)
            final_answer = ""
            for answer in answers:
                if all(a in passage[:max_p_len - 2] for a in answer.split(" ")):
                    final_answer = answer.replace(" ", ",")
                    break
            qa_token_ids, qa_segment_ids = tokenizer.encode(question, final_answer, maxlen=max_qa_len + 1)
            p_token_ids, p_segment_ids = tokenizer.encode(passage, maxlen=max_p_len)
            token_ids = p_token_ids + qa_token_ids[1:]
            segment_ids = p_segment_ids + qa_segment_ids[1:]
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids, length=max_p_len + max_qa_len)
                batch_segment_ids = sequence_padding(batch_segment_ids, length=max_p_len + max_qa_len)
                yield [batch_token_ids, batch_segment_ids], None
                batch_token_ids, batch_segment_ids = [], []


class CrossEntropy(Loss):
    """Cross-entropy of the next token over segment 1 only (the segment ids are the mask)."""

    def compute_loss(self, inputs, mask=None):
        y_true, y_mask, y_pred = inputs
        y_true = y_true[:, 1:]  # the targets: each position predicts the next token
        y_mask = K.cast(y_mask[:, 1:], K.floatx())
        y_pred = y_pred[:, :-1]
        loss = K.sparse_categorical_crossentropy(y_true, y_pred)
        return K.sum(loss * y_mask) / K.sum(y_mask)


bert = build(build_transformer_model, config_path, checkpoint_path, len(keep_tokens),
             application="unilm", keep_tokens=keep_tokens)
output = CrossEntropy(2)(bert.inputs + bert.outputs)
model = keras.models.Model(bert.inputs, output)
model.compile(optimizer=Adam(learning_rate))


class ReadingComprehension(AutoRegressiveDecoder):
    """Beam search over all passages of a question at once; '' when none holds an answer.
    mode='extractive': the answer must be a piece of some passage."""

    def __init__(self, mode="extractive", **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def get_ngram_set(self, x, n):
        """{(n-1)-gram: set of the tokens that follow it in x}."""
        result = {}
        for i in range(len(x) - n + 1):
            k = tuple(x[i:i + n])
            if k[:-1] not in result:
                result[k[:-1]] = set()
            result[k[:-1]].add(k[-1])
        return result

    @AutoRegressiveDecoder.wraps(default_rtype="probas", use_states=True)
    def predict(self, inputs, output_ids, states):
        inputs = [i for i in inputs if i[0, 0] > -1]  # passages marked -1 have no answer
        topk = len(inputs[0])
        all_token_ids, all_segment_ids = [], []
        for token_ids in inputs:  # one element per passage
            token_ids = np.concatenate([token_ids, output_ids], 1)
            segment_ids = np.zeros_like(token_ids)
            if states > 0:
                segment_ids[:, -output_ids.shape[1]:] = 1
            all_token_ids.extend(token_ids)
            all_segment_ids.extend(segment_ids)
        # one padded length for every step, so the model is compiled once (JAX compiles per shape)
        padded_all_token_ids = sequence_padding(all_token_ids, length=max_p_len + max_qa_len)
        padded_all_segment_ids = sequence_padding(all_segment_ids, length=max_p_len + max_qa_len)
        probas = bert.predict([padded_all_token_ids, padded_all_segment_ids], verbose=0)
        probas = [probas[i, len(ids) - 1] for i, ids in enumerate(all_token_ids)]
        probas = np.array(probas).reshape((len(inputs), topk, -1))
        if states == 0:
            # a passage whose most likely first token is the end has no answer
            argmax = probas[:, 0].argmax(axis=1)
            available_idxs = np.where(argmax != self.end_id)[0]
            if len(available_idxs) == 0:
                scores = np.zeros_like(probas[0])
                scores[:, self.end_id] = 1
                return scores, states + 1
            else:
                for i in np.where(argmax == self.end_id)[0]:
                    inputs[i][:, 0] = -1  # mark it, so later steps skip it
                probas = probas[available_idxs]
                inputs = [i for i in inputs if i[0, 0] > -1]
        if self.mode == "extractive":
            # only tokens that continue an n-gram of some passage keep their probability
            new_probas = np.zeros_like(probas)
            ngrams = {}
            for token_ids in inputs:
                token_ids = token_ids[0]
                sep_idx = np.where(token_ids == tokenizer._token_end_id)[0][0]
                p_token_ids = token_ids[1:sep_idx]
                for k, v in self.get_ngram_set(p_token_ids, states + 1).items():
                    ngrams[k] = ngrams.get(k, set()) | v
            for i, ids in enumerate(output_ids):
                available_idxs = ngrams.get(tuple(ids), set())
                available_idxs.add(tokenizer._token_end_id)
                available_idxs = list(available_idxs)
                new_probas[:, i, available_idxs] = probas[:, i, available_idxs]
            probas = new_probas
        return (probas**2).sum(0) / (probas.sum(0) + 1), states + 1  # the passages' vote

    def answer(self, question, passages, topk=1):
        token_ids = []
        for passage in passages:
            passage = re.sub(" |、|；|，", ",", passage)
            p_token_ids = tokenizer.encode(passage, maxlen=max_p_len)[0]
            q_token_ids = tokenizer.encode(question, maxlen=max_q_len + 1)[0]
            token_ids.append(p_token_ids + q_token_ids[1:])
        output_ids = self.beam_search(token_ids, topk=topk, states=0)
        return tokenizer.decode(output_ids)


reader = ReadingComprehension(start_id=None, end_id=tokenizer._token_end_id, maxlen=max_a_len, mode="extractive")


def char_f1(prediction: str, gold: str) -> float:
    """Character-overlap F1 of two strings."""
    common = sum(min(prediction.count(c), gold.count(c)) for c in set(prediction))
    if not common:
        return 0.0
    precision, recall = common / len(prediction), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def evaluate(data, topk=1) -> tuple[float, float]:
    """Accuracy (the answer is one of the gold answers, '' when there is none) and best F1."""
    right, f1 = 0.0, 0.0
    for d in data:
        prediction = reader.answer(d["question"], [p["passage"] for p in d["passages"]], topk).replace(" ", "")
        golds = {a.lower() for p in d["passages"] for a in p["answer"].split(" ") if a} or {""}
        right += prediction in golds
        f1 += max(char_f1(prediction, g) if g else float(not prediction) for g in golds)
    return right / len(data), f1 / len(data)


class Evaluator(keras.callbacks.Callback):
    """Keep the weights with the lowest training loss."""

    def __init__(self):
        super().__init__()
        self.lowest = 1e10

    def on_epoch_end(self, epoch, logs=None):
        if logs["loss"] <= self.lowest:
            self.lowest = logs["loss"]
            model.save_weights("best_model_rc_seq2seq.weights")


if __name__ == "__main__":
    np.random.seed(0)
    train_generator = data_generator(train_data, batch_size)
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
              callbacks=[Evaluator()], verbose=2)
    model.load_weights("best_model_rc_seq2seq.weights")
    d = valid_data[0]
    print(f"question: {d['question']} -> answer: {reader.answer(d['question'], [p['passage'] for p in d['passages']])!r}")
    accuracy, f1 = evaluate(valid_data)
    print(f"final valid: accuracy {accuracy:.4f}, f1 {f1:.4f}, score {(accuracy + f1) / 2:.4f}")
