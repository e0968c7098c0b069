"""Solving primary-school math word problems with BERT as a seq2seq model (UniLM, ape210k,
https://kexue.fm/archives/7809): the question is segment 0, the model writes an equation in
segment 1, and an answer counts as right when the equation evaluates to the gold answer.
The article reports 70%+ accuracy for BERT base, 73%+ for large.

Data: ape210k (https://github.com/Chenny0808/ape210k) is not available offline. Files
datasets/ape210k/{train,valid,test}.ape.json, one JSON object a line with original_text,
equation and ans. The loader normalises them as the article does (mixed numbers,
percentages, ratios, "x=") and keeps the problems whose equation evaluates to the answer.
Without the real files, python examples/seq2seq_data.py ape210k datasets/ape210k writes
templated problems in that format.
Not ported: 0.11.5's predict() writing the DataFountain competition's answer file (it read
the test CSV with pandas, which this project does not install).
Model: a BERT with the simplified vocab; with config_path = None a small randomly
initialised Chinese BERT.
Decoding: AutoSolve is 0.11.5's AutoRegressiveDecoder; with use_engine = True (the
default) generate() calls self.cached_beam_search(bert, token_ids, topk), the
key/value-cached engine (docs/generation.md); False runs 0.11.5's self.beam_search.
Equations are evaluated by eval() only after checking that they hold nothing but numbers,
+ - * / and brackets.
Run: python examples/seq2seq_data.py ape210k datasets/ape210k   (only without the real files)
     python examples/task_seq2seq_ape210k_math_word_problem.py [--smoke]
Result: measured on format-valid sample data only; see examples/README.md.
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

maxlen = 64 if SMOKE else 128
max_equation_len = 16 if SMOKE else 64
batch_size = 8 if SMOKE else 32
epochs = 1 if SMOKE else 10
train_size, eval_size = (16, 4) if SMOKE else (None, None)  # None: the whole file
use_engine = True
config_path = None  # e.g. 'mixed_corpus_bert_base_model/bert_config.json'
checkpoint_path = None  # e.g. 'mixed_corpus_bert_base_model/bert_model.ckpt'
dict_path = chinese_vocab()
data_dir = os.path.join("datasets", "ape210k")
learning_rate = 2e-5 if config_path else 1e-3  # the random small BERT needs a larger step

ARITHMETIC = re.compile(r"^[\d.+\-*/() ]+$")


def evaluate_equation(equation: str) -> float:
    """The value of an arithmetic expression (ValueError for anything else, e.g. a name or **)."""
    if not ARITHMETIC.match(equation) or "**" in equation:
        raise ValueError(f"not an arithmetic expression: {equation!r}")
    return eval(equation, {"__builtins__": {}})


def is_equal(a, b) -> bool:
    """Equal to 6 decimals."""
    return round(float(a), 6) == round(float(b), 6)


def remove_bucket(equation: str) -> str:
    """Drop each pair of brackets whose removal keeps the value."""
    l_buckets, buckets = [], []
    for i, c in enumerate(equation):
        if c == "(":
            l_buckets.append(i)
        elif c == ")":
            buckets.append((l_buckets.pop(), i))
    value = evaluate_equation(equation)
    for l, r in buckets:
        new_equation = "%s %s %s" % (equation[:l], equation[l + 1:r], equation[r + 1:])
        try:
            if is_equal(evaluate_equation(new_equation.replace(" ", "")), value):
                equation = new_equation
        except (ValueError, SyntaxError, ZeroDivisionError):
            pass
    return equation.replace(" ", "")


def load_data(filename: str) -> list[tuple[str, str, str]]:
    """(question, equation, answer) triples, normalised so that the equation evaluates."""
    D = []
    for l in open(require_dataset(filename, "ape210k", data_dir), encoding="utf-8"):
        l = json.loads(l)
        question, equation, answer = l["original_text"], l["equation"], l["ans"]
        # mixed numbers: 3(1/2) -> (3+1/2)
        question = re.sub(r"(\d+)\((\d+/\d+)\)", r"(\1+\2)", question)
        equation = re.sub(r"(\d+)\((\d+/\d+)\)", r"(\1+\2)", equation)
        answer = re.sub(r"(\d+)\((\d+/\d+)\)", r"(\1+\2)", answer)
        equation = re.sub(r"(\d+)\(", r"\1+(", equation)
        answer = re.sub(r"(\d+)\(", r"\1+(", answer)
        # fractions lose their brackets
        question = re.sub(r"\((\d+/\d+)\)", r"\1", question)
        # percentages and ratios
        equation = re.sub(r"([.\d]+)%", r"(\1/100)", equation)
        answer = re.sub(r"([.\d]+)%", r"(\1/100)", answer)
        equation = equation.replace(":", "/").replace("%", "/100")
        answer = answer.replace(":", "/").replace("%", "/100")
        if equation[:2] == "x=":
            equation = equation[2:]
        try:
            if is_equal(evaluate_equation(equation), evaluate_equation(answer)):
                D.append((question, remove_bucket(equation), answer))
        except (ValueError, SyntaxError, ZeroDivisionError):
            continue
    return D


train_data = load_data(os.path.join(data_dir, "train.ape.json"))[:train_size]
valid_data = load_data(os.path.join(data_dir, "valid.ape.json"))[:eval_size]
test_data = load_data(os.path.join(data_dir, "test.ape.json"))[:eval_size]

token_dict, keep_tokens = load_vocab(dict_path=dict_path, simplified=True,
                                     startswith=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
tokenizer = Tokenizer(token_dict, do_lower_case=True)


class data_generator(DataGenerator):
    """Batches of [token_ids, segment_ids]: question in segment 0, equation in segment 1."""

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids = [], []
        for is_end, (question, equation, answer) in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(question, equation, maxlen=maxlen)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids, length=maxlen)
                batch_segment_ids = sequence_padding(batch_segment_ids, length=maxlen)
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


class AutoSolve(AutoRegressiveDecoder):
    """seq2seq decoding: the question is the prompt, the equation continues it in segment 1."""

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs, output_ids, states):
        token_ids, segment_ids = inputs
        token_ids = np.concatenate([token_ids, output_ids], 1)
        segment_ids = np.concatenate([segment_ids, np.ones_like(output_ids)], 1)
        return self.last_token(bert).predict([token_ids, segment_ids])

    def generate(self, text, topk=1):
        token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
        if use_engine:
            output_ids = self.cached_beam_search(bert, token_ids, topk=topk)
        else:
            output_ids = self.beam_search([token_ids, segment_ids], topk=topk)
        return tokenizer.decode(output_ids).replace(" ", "")


autosolve = AutoSolve(start_id=None, end_id=tokenizer._token_end_id, maxlen=max_equation_len)


def is_right(equation: str, answer: str) -> bool:
    """Whether ``equation`` evaluates to ``answer`` (False when it does not evaluate)."""
    try:
        return is_equal(evaluate_equation(equation), evaluate_equation(answer))
    except (ValueError, SyntaxError, ZeroDivisionError, OverflowError):
        return False


def evaluate(data, topk=1) -> float:
    """Accuracy of the generated equations' values."""
    return float(np.mean([is_right(autosolve.generate(question, topk), answer)
                          for question, equation, answer in data]))


class Evaluator(keras.callbacks.Callback):
    """Keep the weights with the best validation accuracy."""

    def __init__(self):
        super().__init__()
        self.best_acc = 0.0

    def on_epoch_end(self, epoch, logs=None):
        acc = evaluate(valid_data)
        if acc >= self.best_acc:
            self.best_acc = acc
            model.save_weights("best_model_ape210k.weights")
        print(f"valid: acc {acc:.4f}, best acc {self.best_acc:.4f}")


if __name__ == "__main__":
    train_generator = data_generator(train_data, batch_size)
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
              callbacks=[Evaluator()], verbose=2)
    model.load_weights("best_model_ape210k.weights")
    first_number = np.mean([is_right((re.findall(r"\d+\.?\d*", q) or ["0"])[0], a) for q, _, a in test_data])
    question, _, answer = test_data[0]
    print(f"example: {question} -> {autosolve.generate(question)} (answer {answer})")
    print(f"final test acc: {evaluate(test_data):.4f} (baseline, the question's first number: {first_number:.4f})")
