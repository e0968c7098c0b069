"""Building reading-comprehension data with a seq2seq model (UniLM): from a passage, sample
an answer, then beam-search a question for it. Training sequences are
[CLS] passage [SEP] answer [SEP] question [SEP], with the answer and question in segment 1.

Data: WebQA and SogouQA (https://github.com/bojone/dgcnn_for_reading_comprehension) are not
available offline. Files datasets/qa/WebQA.json and datasets/qa/SogouQA.json: a JSON list of
{"question": ..., "passages": [{"passage": ..., "answer": ...}, ...]} ('' when a passage has
no answer). Passages are cut into pieces of at most max_p_len - 2 characters, and each piece
holding its answer is one example; a fixed-seed shuffle holds out every tenth as validation
(0.11.5 saved that order to ../random_order.json). Without the real files,
python examples/seq2seq_data.py webqa datasets/qa writes templated records in that layout.
Model: a BERT with the simplified vocab; with config_path = None a small randomly
initialised Chinese BERT.
Decoding: QuestionAnswerGeneration is 0.11.5's AutoRegressiveDecoder. With use_engine =
True (the default) the answer is sampled by self.cached_random_sample(bert, token_ids, 1,
topp=topp, seed=...), the key/value-cached engine (docs/generation.md). The question is
always beam-searched by 0.11.5's self.beam_search: its prompt already holds the answer in
segment 1, and the engine's UniLM prompt is segment 0 only.
Run: python examples/seq2seq_data.py webqa datasets/qa   (only without the real files)
     python examples/task_question_answer_generation_by_seq2seq.py [--smoke]
Result: generated (question, answer) pairs for validation passages in qa.csv, the share of
answers found in their passage and the questions' character ROUGE-L against the gold
question; measured on format-valid sample data only (examples/README.md).
"""

import json
import os

import numpy as np

from bert4keras.backend import K, keras
from bert4keras.layers import Loss
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam
from bert4keras.snippets import AutoRegressiveDecoder, DataGenerator, open, sequence_padding, text_segmentate
from bert4keras.tokenizers import Tokenizer, load_vocab
from examples_common import SMOKE, build, chinese_vocab
from seq2seq_data import require_dataset, rouge_l

max_p_len = 64 if SMOKE else 128
max_q_len = 16 if SMOKE else 64
max_a_len = 16
batch_size = 8 if SMOKE else 32
epochs = 1 if SMOKE else 10
train_size, eval_size = (16, 4) if SMOKE else (None, 100)  # None: all
use_engine = True
config_path = None  # e.g. 'chinese_L-12_H-768_A-12/bert_config.json'
checkpoint_path = None  # e.g. 'chinese_L-12_H-768_A-12/bert_model.ckpt'
dict_path = chinese_vocab()
data_dir = os.path.join("datasets", "qa")
learning_rate = 1e-5 if config_path else 1e-3  # the random small BERT needs a larger step

webqa_data = json.load(open(require_dataset(os.path.join(data_dir, "WebQA.json"), "WebQA/SogouQA", data_dir)))
sogou_data = json.load(open(require_dataset(os.path.join(data_dir, "SogouQA.json"), "WebQA/SogouQA", data_dir)))

# (passage piece, question, answer) for every piece that holds its passage's answer
seps, strips = "\n。！？!?；;，, ", "；;，, "
data = []
for d in webqa_data + sogou_data:
    for p in d["passages"]:
        if p["answer"]:
            for t in text_segmentate(p["passage"], max_p_len - 2, seps, strips):
                if p["answer"] in t:
                    data.append((t, d["question"], p["answer"]))

random_order = np.random.RandomState(42).permutation(len(data))
train_data = [data[j] for i, j in enumerate(random_order) if i % 10 != 0][:train_size]
valid_data = [data[j] for i, j in enumerate(random_order) if i % 10 == 0][:eval_size]

token_dict, keep_tokens = load_vocab(dict_path=dict_path, simplified=True,
                                     startswith=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
tokenizer = Tokenizer(token_dict, do_lower_case=True)


class data_generator(DataGenerator):
    """Batches of [CLS] passage [SEP] answer [SEP] question [SEP], answer and question in segment 1."""

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids = [], []
        for is_end, (p, q, a) in self.sample(random):
            p_token_ids, _ = tokenizer.encode(p, maxlen=max_p_len + 1)
            a_token_ids, _ = tokenizer.encode(a, maxlen=max_a_len)
            q_token_ids, _ = tokenizer.encode(q, maxlen=max_q_len)
            token_ids = p_token_ids + a_token_ids[1:] + q_token_ids[1:]
            segment_ids = [0] * len(p_token_ids)
            segment_ids += [1] * (len(token_ids) - len(p_token_ids))
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            if len(batch_token_ids) == self.batch_size or is_end:
                length = max_p_len + max_a_len + max_q_len
                batch_token_ids = sequence_padding(batch_token_ids, length=length)
                batch_segment_ids = sequence_padding(batch_segment_ids, length=length)
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


class QuestionAnswerGeneration(AutoRegressiveDecoder):
    """Sample an answer, then beam-search a question for it."""

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs, output_ids, states):
        token_ids, segment_ids = inputs
        token_ids = np.concatenate([token_ids, output_ids], 1)
        segment_ids = np.concatenate([segment_ids, np.ones_like(output_ids)], 1)
        return self.last_token(bert).predict([token_ids, segment_ids])

    def generate(self, passage, topk=1, topp=0.95):
        token_ids, segment_ids = tokenizer.encode(passage, maxlen=max_p_len)
        if use_engine:
            a_ids = self.cached_random_sample(bert, token_ids, 1, topp=topp, seed=np.random.randint(2**31))[0]
        else:
            a_ids = self.random_sample([token_ids, segment_ids], 1, topp=topp)[0]
        token_ids += list(a_ids)
        segment_ids += [1] * len(a_ids)
        q_ids = self.beam_search([token_ids, segment_ids], topk=topk)
        return tokenizer.decode(q_ids), tokenizer.decode(a_ids)


qag = QuestionAnswerGeneration(start_id=None, end_id=tokenizer._token_end_id, maxlen=max_q_len)


def predict_to_file(data, filename, topk=1) -> list[tuple[str, str]]:
    """Write "question<TAB>answer<TAB>passage" lines (atomically); return the (q, a) pairs."""
    generated = [qag.generate(d[0], topk) for d in data]
    with open(filename + ".tmp", "w", encoding="utf-8") as f:
        for (q, a), d in zip(generated, data):
            f.write(f"{q}\t{a}\t{d[0]}\n")
    os.replace(filename + ".tmp", filename)
    return generated


class Evaluator(keras.callbacks.Callback):
    """Keep the weights with the lowest training loss."""

    def __init__(self):
        super().__init__()
        self.lowest = 1e10

    def on_epoch_end(self, epoch, logs=None):
        if logs["loss"] <= self.lowest:
            self.lowest = logs["loss"]
            model.save_weights("best_model_qag.weights")


if __name__ == "__main__":
    np.random.seed(0)
    train_generator = data_generator(train_data, batch_size)
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
              callbacks=[Evaluator()], verbose=2)
    model.load_weights("best_model_qag.weights")
    generated = predict_to_file(valid_data, "qa.csv")
    for (q, a), (passage, _, _) in list(zip(generated, valid_data))[:3]:
        print(f"passage: {passage}\n  question: {q}\n  answer: {a}")
    found = np.mean([bool(a) and a.replace(" ", "") in p.lower() for (_, a), (p, _, _) in zip(generated, valid_data)])
    question_rouge = np.mean([rouge_l(q.replace(" ", ""), gold.lower()) if q else 0.0
                              for (q, _), (_, gold, _) in zip(generated, valid_data)])
    print(f"generated pairs: {len(generated)} in qa.csv; answers found in the passage: {found:.4f}, "
          f"question rouge-l against the gold question: {question_rouge:.4f}")
