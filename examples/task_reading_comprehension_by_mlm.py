"""Reading comprehension as masked-language-model filling (https://kexue.fm/archives/7148):
the input is `[CLS] [MASK]*max_a_len [SEP] question [SEP] passage [SEP]`, the MLM predicts
the answer's characters at the [MASK] positions (then [SEP]). Decoding is argmax, restricted at
each step to the characters that follow the answer so far somewhere in the passage, so the
answer is always a substring; answers from several passages are combined by their scores.
This is non-autoregressive: one forward pass per passage, so no AutoRegressiveDecoder.

Data: WebQA + SogouQA in the layout of https://github.com/bojone/dgcnn_for_reading_comprehension
(not available offline): data_dir/WebQA.json and SogouQA.json, each a JSON list of {"id",
"question", "passages": [{"passage", "answer"}]}. A fixed random third of SogouQA is the
validation set; training mixes SogouQA and WebQA 2:1. For a run without it:
python examples/task_data.py webqa datasets/webqa  (format-valid sample data only).
Model: BERT + MLM head (chinese_bert(): the small Chinese BERT pretraining/ makes, else a random
one), vocab simplified with load_vocab(simplified=True) and keep_tokens, as in 0.11.5.
Run: python examples/task_reading_comprehension_by_mlm.py [--smoke]
Result: on validation, accuracy (the answer is a gold answer), character F1 and their mean, the
dgcnn repository's score. 0.11.5 reported 0.7745 (accuracy 0.728, F1 0.821) with BERT base after
10 epochs; on the sample data see examples/README.md.
"""

import json
import os
import re
from collections import Counter

import numpy as np

from bert4keras.backend import K, keras
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam
from bert4keras.snippets import DataGenerator, open, sequence_padding
from bert4keras.tokenizers import Tokenizer, load_vocab
from examples_common import SMOKE, build, chinese_bert, fail

max_p_len = 32 if SMOKE else 128  # 256 in 0.11.5
max_q_len = 16 if SMOKE else 32  # 64 in 0.11.5
max_a_len = 8 if SMOKE else 16  # 32 in 0.11.5
batch_size = 8 if SMOKE else 32
epochs = 1 if SMOKE else 5
data_limit = 16 if SMOKE else None  # questions read per file; None: all
learning_rate = 1e-3  # for the small BERT; 0.11.5 used 1e-5 for BERT base
config_path, checkpoint_path, dict_path = chinese_bert()  # or a Google BERT's three files
data_dir = os.path.join("datasets", "webqa")
seq_len = 1 + max_a_len + 1 + max_q_len + max_p_len  # every batch is padded to this


def load_json(name: str) -> list[dict]:
    path = os.path.join(data_dir, name)
    if not os.path.exists(path):
        fail(f"the QA file {path!r} does not exist",
             f"set data_dir at the top of the script to the WebQA/SogouQA folder, or write sample data "
             f"there: python examples/task_data.py webqa {data_dir}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)[:data_limit]


webqa_data = load_json("WebQA.json")
sogou_data = load_json("SogouQA.json")

# a fixed random order splits off the validation third (0.11.5 saved its order to a file)
random_order = np.random.RandomState(0).permutation(len(sogou_data))
train_data = [sogou_data[j] for i, j in enumerate(random_order) if i % 3 != 0]
valid_data = [sogou_data[j] for i, j in enumerate(random_order) if i % 3 == 0]
train_data.extend(train_data)
train_data.extend(webqa_data)  # SogouQA : WebQA = 2 : 1

# keep only the tokens WordPiece can produce; keep_tokens selects their rows of the checkpoint
token_dict, keep_tokens = load_vocab(dict_path=dict_path, simplified=True,
                                     startswith=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
tokenizer = Tokenizer(token_dict, do_lower_case=True)


def encode_input(question: str, passage: str) -> tuple[list[int], list[int]]:
    """`[CLS] [MASK]*max_a_len [SEP] question [SEP] passage [SEP]` and the passage's token ids."""
    q_token_ids, _ = tokenizer.encode(question, maxlen=max_q_len + 1)
    p_token_ids, _ = tokenizer.encode(passage, maxlen=max_p_len + 1)
    token_ids = [tokenizer._token_start_id] + [tokenizer._token_mask_id] * max_a_len + [tokenizer._token_end_id]
    token_ids += q_token_ids[1:] + p_token_ids[1:]
    return token_ids, p_token_ids[1:]


class data_generator(DataGenerator):
    """([token_ids, segment_ids], answer token ids + [SEP], padded to max_a_len); one random
    passage per question, its answer the first gold answer all of whose parts it contains."""

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids, batch_a_token_ids = [], [], []
        for is_end, D in self.sample(random):
            question = D["question"]
            answers = [p["answer"] for p in D["passages"] if p["answer"]]
            passage = np.random.choice(D["passages"])["passage"]
            passage = re.sub(u" |、|；|，", ",", passage)
            final_answer = ""
            for answer in answers:
                if all([a in passage[:max_p_len - 2] for a in answer.split(" ")]):
                    final_answer = answer.replace(" ", ",")
                    break
            a_token_ids, _ = tokenizer.encode(final_answer, maxlen=max_a_len + 1)
            token_ids, _ = encode_input(question, passage)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append([0] * len(token_ids))
            batch_a_token_ids.append(a_token_ids[1:])
            if len(batch_token_ids) == self.batch_size or is_end:
                yield [sequence_padding(batch_token_ids, length=seq_len),
                       sequence_padding(batch_segment_ids, length=seq_len)], \
                      sequence_padding(batch_a_token_ids, max_a_len)
                batch_token_ids, batch_segment_ids, batch_a_token_ids = [], [], []


model = build(build_transformer_model, config_path, checkpoint_path, tokenizer.vocab_size,
              with_mlm=True, keep_tokens=keep_tokens)
output = keras.layers.Lambda(lambda x: x[:, 1:max_a_len + 1])(model.output)
model = keras.models.Model(model.input, output)


def masked_cross_entropy(y_true, y_pred):
    """Cross-entropy over the answer positions, padding (id 0) excluded."""
    y_true = K.reshape(y_true, [K.shape(y_true)[0], -1])
    y_mask = K.cast(K.not_equal(y_true, 0), K.floatx())
    cross_entropy = K.sparse_categorical_crossentropy(y_true, y_pred)
    return K.sum(cross_entropy * y_mask) / K.sum(y_mask)


model.compile(loss=masked_cross_entropy, optimizer=Adam(learning_rate))


def get_ngram_set(x, n):
    """{(n-1)-gram: set of tokens that follow it} over the n-grams of x."""
    result = {}
    for i in range(len(x) - n + 1):
        k = tuple(x[i:i + n])
        result.setdefault(k[:-1], set()).add(k[-1])
    return result


def gen_answer(question: str, passages: list[str]) -> dict[str, float]:
    """Candidate answers with scores. The model is an MLM, so each position is an argmax,
    taken over the tokens that continue the answer so far in the passage (or [SEP])."""
    all_p_token_ids, token_ids = [], []
    for passage in passages:
        passage = re.sub(u" |、|；|，", ",", passage)
        ids, p_token_ids = encode_input(question, passage)
        all_p_token_ids.append(p_token_ids)
        token_ids.append(ids)
    token_ids = sequence_padding(token_ids, length=seq_len)
    segment_ids = np.zeros_like(token_ids)
    probas = model.predict([token_ids, segment_ids], verbose=0)
    results = {}
    for t, p in zip(all_p_token_ids, probas):
        a, score = tuple(), 0.0
        for i in range(max_a_len):
            idxs = list(get_ngram_set(t, i + 1).get(a, set()))
            if tokenizer._token_end_id not in idxs:
                idxs.append(tokenizer._token_end_id)
            pi = np.zeros_like(p[i])  # tokens outside the passage get probability 0
            pi[idxs] = p[i, idxs]
            a = a + (pi.argmax(),)
            score += pi.max()
            if a[-1] == tokenizer._token_end_id:
                break
        score = score / (i + 1)
        a = tokenizer.decode(a)
        if a:
            results[a] = results.get(a, []) + [score]
    return {k: (np.array(v)**2).sum() / (sum(v) + 1) for k, v in results.items()}


def max_in_dict(d):
    if d:
        return sorted(d.items(), key=lambda s: -s[1])[0][0]


def char_f1(prediction: str, gold: str) -> float:
    """F1 over the characters two strings share (as multisets)."""
    common = sum((Counter(prediction) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def predict_to_file(data, filename: str) -> tuple[float, float, float]:
    """Write `id<TAB>answer` lines (the dgcnn repository's format); return the (score, accuracy,
    F1) the repository's evaluation computes: accuracy counts answers among the gold ones, F1 is
    the best character F1 against them (questions without an answer expect an empty one)."""
    accuracy, f1 = 0.0, 0.0
    with open(filename, "w", encoding="utf-8") as f:
        for d in data:
            a = max_in_dict(gen_answer(d["question"], [p["passage"] for p in d["passages"]])) or ""
            f.write(f"{d['id']}\t{a}\n")
            gold = {x for p in d["passages"] for x in p["answer"].split(" ") if x}
            accuracy += float(a in gold) if gold else float(a == "")
            f1 += max((char_f1(a, g) for g in gold), default=float(a == ""))
    accuracy, f1 = accuracy / len(data), f1 / len(data)
    return (accuracy + f1) / 2, accuracy, f1


class Evaluator(keras.callbacks.Callback):
    """Keep the weights with the lowest training loss (as 0.11.5)."""

    def __init__(self):
        super().__init__()
        self.lowest = 1e10

    def on_epoch_end(self, epoch, logs=None):
        if logs["loss"] <= self.lowest:
            self.lowest = logs["loss"]
            model.save_weights("best_model.weights.h5")


if __name__ == "__main__":
    train_generator = data_generator(train_data, batch_size)
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
              callbacks=[Evaluator()], verbose=2)
    model.load_weights("best_model.weights.h5")
    score, accuracy, f1 = predict_to_file(valid_data, "valid_pred.txt")
    print(f"final valid score: {score:.5f} (accuracy {accuracy:.5f}, f1 {f1:.5f}) on {len(valid_data)} questions")
