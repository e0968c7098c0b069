"""Title generation for CSL with an encoder-decoder: multilingual T5 v1.1 (mT5,
https://kexue.fm/archives/7867) fine-tuned on "abstract -> title", scored with BLEU and
ROUGE-1/2/L on the validation set after each epoch.

Data: CSL is not available offline. Files datasets/csl/{train,val,test}.tsv, one
"title<TAB>abstract" line each. Without the real files,
python examples/seq2seq_data.py csl datasets/csl writes files in that layout from People's
Daily headline / lead-paragraph pairs (real text, but news, not paper abstracts).
Model: mT5 v1.1 (gated GELU, untied LM head). With config_path = None: a small randomly
initialised mT5-shaped model, and with spm_path = None a SentencePiece unigram vocab
trained here on the training titles and abstracts (pad 0, </s> 1, unk 2 as in mT5) and
written to sentencepiece_csl.model. With a real checkpoint, set spm_path and
keep_tokens_path (the reduced Chinese vocab of https://github.com/bojone/t5_in_bert4keras).
Decoding: AutoTitle is 0.11.5's AutoRegressiveDecoder (encoder once, decoder per step);
with use_engine = True (the default) generate() calls
self.cached_beam_search(t5.model, c_token_ids, topk), the key/value-cached engine
(docs/generation.md); False runs 0.11.5's self.beam_search through predict().
Metrics: character-level ROUGE-1/2/L and smoothed sentence BLEU from seq2seq_data.py (the
0.11.5 script used the rouge and nltk packages).
Run: python examples/seq2seq_data.py csl datasets/csl   (only without the real files)
     python examples/task_seq2seq_autotitle_csl_mt5.py [--smoke]
Result: measured on format-valid sample data only; see examples/README.md.
"""

import json
import os

import numpy as np
import sentencepiece

from bert4keras.backend import K, keras
from bert4keras.layers import Loss
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam
from bert4keras.snippets import AutoRegressiveDecoder, DataGenerator, open, sequence_padding
from bert4keras.tokenizers import SpTokenizer
from examples_common import SMOKE, fail, require
from seq2seq_data import generation_metrics, require_dataset

max_c_len = 64 if SMOKE else 128
max_t_len = 32
batch_size = 8 if SMOKE else 16
epochs = 1 if SMOKE else 8
train_size, eval_size = (16, 4) if SMOKE else (None, None)  # None: the whole file
use_engine = True
config_path = None  # e.g. 'mt5/mt5_base/mt5_base_config.json'
checkpoint_path = None  # e.g. 'mt5/mt5_base/model.ckpt-1000000'
spm_path = None  # e.g. 'mt5/sentencepiece_cn.model'; None: train one on the training texts
keep_tokens_path = None  # e.g. 'mt5/sentencepiece_cn_keep_tokens.json'
spm_vocab_size = 1000 if SMOKE else 4000  # only for the vocab trained here
tiny_mt5 = dict(hidden_size=32 if SMOKE else 128, num_hidden_layers=1 if SMOKE else 2,
                num_attention_heads=2, intermediate_size=64 if SMOKE else 256,
                hidden_act=["gelu", "linear"], dropout_rate=0.1)
data_dir = os.path.join("datasets", "csl")
learning_rate = 2e-4 if config_path else 1e-3


def load_data(filename: str) -> list[tuple[str, str]]:
    """One "title<TAB>content" line -> (title, content)."""
    D = []
    with open(require_dataset(filename, "CSL", data_dir), encoding="utf-8") as f:
        for l in f:
            title, content = l.strip().split("\t")
            D.append((title, content))
    return D


train_data = load_data(os.path.join(data_dir, "train.tsv"))[:train_size]
valid_data = load_data(os.path.join(data_dir, "val.tsv"))[:eval_size]
test_data = load_data(os.path.join(data_dir, "test.tsv"))[:eval_size]

if spm_path is None:
    # mT5's special ids: <pad> 0 (also the decoder's start), </s> 1, <unk> 2
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([t for t, _ in train_data] + [c for _, c in train_data]),
        model_prefix="sentencepiece_csl.tmp", vocab_size=spm_vocab_size, hard_vocab_limit=False,
        character_coverage=0.9995, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    os.replace("sentencepiece_csl.tmp.model", "sentencepiece_csl.model")
    os.remove("sentencepiece_csl.tmp.vocab")
    spm_path = "sentencepiece_csl.model"
tokenizer = SpTokenizer(require(spm_path, "the SentencePiece model"), token_start=None, token_end="</s>")
keep_tokens = json.load(open(require(keep_tokens_path, "the keep_tokens file"))) if keep_tokens_path else None


class data_generator(DataGenerator):
    """Batches of [content ids, 0 + title ids] (the decoder starts from id 0)."""

    def __iter__(self, random=False):
        batch_c_token_ids, batch_t_token_ids = [], []
        for is_end, (title, content) in self.sample(random):
            c_token_ids, _ = tokenizer.encode(content, maxlen=max_c_len)
            t_token_ids, _ = tokenizer.encode(title, maxlen=max_t_len)
            batch_c_token_ids.append(c_token_ids)
            batch_t_token_ids.append([0] + t_token_ids)
            if len(batch_c_token_ids) == self.batch_size or is_end:
                batch_c_token_ids = sequence_padding(batch_c_token_ids, length=max_c_len)
                batch_t_token_ids = sequence_padding(batch_t_token_ids, length=max_t_len + 1)
                yield [batch_c_token_ids, batch_t_token_ids], None
                batch_c_token_ids, batch_t_token_ids = [], []


class CrossEntropy(Loss):
    """Cross-entropy of the next title token, masked by the decoder's own padding mask."""

    def compute_loss(self, inputs, mask=None):
        y_true, y_pred = inputs
        y_true = y_true[:, 1:]  # the targets: each position predicts the next token
        y_mask = K.cast(mask[1], K.floatx())[:, 1:]
        y_pred = y_pred[:, :-1]
        loss = K.sparse_categorical_crossentropy(y_true, y_pred)
        return K.sum(loss * y_mask) / K.sum(y_mask)


if config_path is None:
    t5 = build_transformer_model(model="mt5.1.1", vocab_size=tokenizer.vocab_size,
                                 return_keras_model=False, name="T5", **tiny_mt5)
else:
    try:
        t5 = build_transformer_model(require(config_path, "the model config"), checkpoint_path,
                                     keep_tokens=keep_tokens, model="mt5.1.1",
                                     return_keras_model=False, name="T5")
    except (ValueError, KeyError, OSError) as error:
        first = (str(error).strip().splitlines() or [repr(error)])[0]
        fail(f"checkpoint {checkpoint_path!r} does not match config {config_path!r}: {first}",
             "use the config (and keep_tokens file) released with this mT5 checkpoint")

encoder = t5.encoder
decoder = t5.decoder
model = t5.model
output = CrossEntropy(1)([model.inputs[1], model.outputs[0]])
model = keras.models.Model(model.inputs, output)
model.compile(optimizer=Adam(learning_rate))


class AutoTitle(AutoRegressiveDecoder):
    """seq2seq decoding: the encoder runs once on the content, the decoder once per step."""

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs, output_ids, states):
        c_encoded = inputs[0]
        return self.last_token(decoder).predict([c_encoded, output_ids])

    def generate(self, text, topk=1):
        c_token_ids, _ = tokenizer.encode(text, maxlen=max_c_len)
        if use_engine:
            output_ids = self.cached_beam_search(t5.model, c_token_ids, topk=topk)
        else:
            c_encoded = encoder.predict(np.array([c_token_ids]), verbose=0)[0]
            output_ids = self.beam_search([c_encoded], topk=topk)
        return tokenizer.decode([int(i) for i in output_ids])


# T5 starts decoding from id 0, the same id as <pad>
autotitle = AutoTitle(start_id=0, end_id=tokenizer._token_end_id, maxlen=max_t_len)


def evaluate(data, topk=1) -> dict[str, float]:
    """Mean character ROUGE-1/2/L and BLEU of the generated titles."""
    return generation_metrics([(autotitle.generate(content, topk), title) for title, content in data])


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


class Evaluator(keras.callbacks.Callback):
    """Keep the weights with the best validation BLEU."""

    def __init__(self):
        super().__init__()
        self.best_bleu = -1.0

    def on_epoch_end(self, epoch, logs=None):
        metrics = evaluate(valid_data)
        if metrics["bleu"] > self.best_bleu:
            self.best_bleu = metrics["bleu"]
            model.save_weights("best_model_csl_mt5.weights")
        print(f"valid: {format_metrics(metrics)}, best bleu {self.best_bleu:.4f}")


if __name__ == "__main__":
    train_generator = data_generator(train_data, batch_size)
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
              callbacks=[Evaluator()], verbose=2)
    model.load_weights("best_model_csl_mt5.weights")
    copy_length = round(np.mean([len(title) for title, _ in train_data]))
    baseline = generation_metrics([(content[:copy_length], title) for title, content in test_data])
    print(f"copy-the-input baseline (first {copy_length} characters): {format_metrics(baseline)}")
    print(f"final test: {format_metrics(evaluate(test_data))}")
