"""Named-entity recognition for the command line and the server: data, training, decoding.

An entity is ``(start, end, label)`` in characters of the text, ``end`` exclusive. Two heads:
a CRF over BIO tags (tag 0 is O; label k has B = 2k + 1 and I = 2k + 2; Viterbi decoding) and
GlobalPointer (one score per (start token, end token) span and label; spans scoring > 0,
https://kexue.fm/archives/8373). ``train --task ner`` saves ``model.keras``, ``ner.json`` and
``vocab.txt``; :func:`load_ner` reads them back for ``predict``, ``eval`` and ``serve``.
"""

from __future__ import annotations

import json
import os
import random
import time

import numpy as np

NER_FILE = "ner.json"
HEADS = ("crf", "globalpointer")
Entity = tuple  # (start, end, label): characters, end exclusive


# --------------------------------------------------------------------------- data


def bio_spans(tags: list[str], where: str) -> list[tuple[int, int, str]]:
    """``B-X I-X O`` tags -> (first, last + 1, X) index spans; a stray ``I-X`` starts an entity."""
    spans, current = [], None
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not (tag == "O" or tag[:2] in ("B-", "I-") and len(tag) > 2):
            raise ValueError(f"{where}: tag {i} is {tag!r}; expected O, B-<label> or I-<label>")
        if tag == "O":
            current = None
        elif tag.startswith("B-") or current is None or current[2] != tag[2:]:
            current = [i, i + 1, tag[2:]]
            spans.append(current)
        else:
            current[1] = i + 1
    return [tuple(s) for s in spans]


def parse_ner_record(row: dict, where: str) -> tuple[str, list[Entity]]:
    """One JSONL record in any of the three accepted layouts -> (text, entities).

    * spans: ``{"text": ..., "entities": [{"start", "end", "label"} or [start, end, label]]}``;
    * character BIO: ``{"text": ..., "tags": [one tag per character]}``;
    * token BIO: ``{"tokens": [...], "tags": [...]}`` (the text is the tokens joined by spaces).
    """
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "tokens" in row:
        tokens, tags = row["tokens"], row.get("tags")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError(f"{where}: 'tokens' must be a list of strings")
        if not isinstance(tags, list) or len(tags) != len(tokens):
            raise ValueError(f"{where}: 'tags' must be a list with one tag per token ({len(tokens)})")
        starts, position = [], 0
        for token in tokens:
            starts.append(position)
            position += len(token) + 1
        text = " ".join(tokens)
        return text, [(starts[a], starts[b - 1] + len(tokens[b - 1]), label)
                      for a, b, label in bio_spans(tags, where)]
    text = row.get("text")
    if not isinstance(text, str):
        raise ValueError(f"{where}: expected a 'text' string with 'entities' or 'tags', or 'tokens' with 'tags'")
    if "tags" in row:
        tags = row["tags"]
        if not isinstance(tags, list) or len(tags) != len(text):
            raise ValueError(f"{where}: 'tags' must hold one tag per character of 'text' ({len(text)}), "
                             f"got {len(tags) if isinstance(tags, list) else type(tags).__name__}")
        return text, bio_spans(tags, where)
    entities = []
    for i, e in enumerate(row.get("entities", [])):
        if isinstance(e, dict):
            e = (e.get("start"), e.get("end"), e.get("label"))
        if not (isinstance(e, (list, tuple)) and len(e) == 3 and isinstance(e[0], int)
                and isinstance(e[1], int) and isinstance(e[2], str)):
            raise ValueError(f"{where}: entities[{i}] must be {{start, end, label}} or [start, end, label]")
        start, end, label = e
        if not 0 <= start < end <= len(text):
            raise ValueError(f"{where}: entities[{i}] spans [{start}, {end}) outside the text's "
                             f"{len(text)} characters (end is exclusive)")
        entities.append((start, end, label))
    return text, entities


def read_ner_file(path: str, encoding: str = "utf-8") -> list[tuple[str, list[Entity]]]:
    """A JSONL file of NER records (see :func:`parse_ner_record`); errors name the file and line."""
    from bert4keras.cli import read_text_lines

    data = []
    for n, line in read_text_lines(path, encoding):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
        data.append(parse_ner_record(row, f"{path}:{n}"))
    if not data:
        raise ValueError(f"{path}: no NER records found")
    return data


# --------------------------------------------------------------------------- alignment


def token_span(offsets: list, start: int, end: int) -> tuple[int, int] | None:
    """First and last token covering characters [start, end), or None (e.g. truncated away)."""
    inside = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
    return (inside[0], inside[-1]) if inside else None


def crf_tags(offsets: list, entities: list[Entity], labels: list[str]) -> np.ndarray:
    tags = np.zeros(len(offsets), "int32")
    for start, end, label in entities:
        span = token_span(offsets, start, end)
        if span is not None:
            k = labels.index(label)
            tags[span[0]] = 2 * k + 1
            tags[span[0] + 1: span[1] + 1] = 2 * k + 2
    return tags


def pointer_targets(offsets: list, entities: list[Entity], labels: list[str], length: int) -> np.ndarray:
    target = np.zeros((len(labels), length, length), "float32")
    for start, end, label in entities:
        span = token_span(offsets, start, end)
        if span is not None:
            target[labels.index(label), span[0], span[1]] = 1
    return target


def entity_dict(text: str, offsets: list, first: int, last: int, label: str) -> dict:
    start, end = offsets[first][0], offsets[last][1]
    return {"start": int(start), "end": int(end), "label": label, "text": text[start:end]}


def decode_entities(output: np.ndarray, text: str, offsets: list, info: dict,
                    trans: np.ndarray | None) -> list[dict]:
    """Entities of one text from the model's padded output row (CRF emissions or pointer logits)."""
    labels, n = info["labels"], len(offsets)
    found = []
    if info["head"] == "crf":
        from bert4keras.viterbi import ViterbiDecoder

        path = [int(t) for t in ViterbiDecoder(trans, starts=[0], ends=[0]).decode(output[:n])]
        first, kind = None, None
        for i, tag in enumerate(path):
            if first is not None and tag and tag % 2 == 0 and (tag - 1) // 2 == kind:
                continue  # I- of the open entity
            if first is not None:
                found.append(entity_dict(text, offsets, first, i - 1, labels[kind]))
                first = None
            if tag:  # B-, or a stray I- that starts an entity
                first, kind = i, (tag - 1) // 2
        if first is not None:
            found.append(entity_dict(text, offsets, first, n - 1, labels[kind]))
    else:
        scores = output[:, :n, :n]
        for k, a, b in zip(*np.where(scores > 0)):
            if offsets[a][1] > offsets[a][0] and offsets[b][1] > offsets[b][0]:
                found.append(entity_dict(text, offsets, int(a), int(b), labels[k]))
    return sorted(found, key=lambda e: (e["start"], e["end"], e["label"]))


# --------------------------------------------------------------------------- model


def global_pointer_loss(y_true, y_pred):
    """Multi-label cross-entropy over every (start, end) cell of each label (https://kexue.fm/archives/7359)."""
    from keras import ops

    from bert4keras.backend import multilabel_categorical_crossentropy

    shape = ops.shape(y_pred)
    y_true = ops.reshape(y_true, (shape[0] * shape[1], -1))
    y_pred = ops.reshape(y_pred, (shape[0] * shape[1], -1))
    return ops.mean(multilabel_categorical_crossentropy(y_true, y_pred))


def build_ner_model(config_path: str, checkpoint_path: str | None, num_labels: int, head: str):
    """Pretrained encoder -> a Dense + CRF over BIO tags, or a GlobalPointer over spans."""
    import keras

    from bert4keras.layers import ConditionalRandomField, Dense, GlobalPointer
    from bert4keras.models import build_transformer_model

    if head not in HEADS:
        raise ValueError(f"unknown NER head {head!r}; expected one of {', '.join(HEADS)}")
    encoder = build_transformer_model(config_path, checkpoint_path)
    if head == "crf":
        x = Dense(2 * num_labels + 1, name="NER-Emissions")(encoder.output)
        crf = ConditionalRandomField(lr_multiplier=100, name="NER-CRF")
        model = keras.Model(encoder.inputs, crf(x), name="ner")
        return model, crf.sparse_loss
    x = GlobalPointer(num_labels, 64, name="NER-GlobalPointer")(encoder.output)
    return keras.Model(encoder.inputs, x, name="ner"), global_pointer_loss


def crf_transitions(model) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(model.get_layer("NER-CRF").trans), "float32")


def save_ner(model, output: str, info: dict, vocab_path: str) -> None:
    """Write what :func:`load_ner` reads; every file lands atomically."""
    from bert4keras.cli import atomic_write_text, save_model_atomically

    os.makedirs(output, exist_ok=True)
    save_model_atomically(model, os.path.join(output, "model.keras"))
    atomic_write_text(os.path.join(output, NER_FILE), json.dumps(info, ensure_ascii=False, indent=1))
    with open(vocab_path, encoding="utf-8") as f:
        atomic_write_text(os.path.join(output, "vocab.txt"), f.read())


def load_ner(output: str):
    """(model, tokenizer, info, CRF transitions or None) from a directory written by ``train --task ner``."""
    import keras

    import bert4keras.layers  # noqa: F401  (registers the custom layers)
    from bert4keras.tokenizers import Tokenizer

    for name in ("model.keras", "vocab.txt", NER_FILE):
        if not os.path.exists(os.path.join(output, name)):
            raise FileNotFoundError(f"{output}: missing {name} (was it written by 'train --task ner'?)")
    with open(os.path.join(output, NER_FILE), encoding="utf-8") as f:
        info = json.load(f)
    model = keras.models.load_model(os.path.join(output, "model.keras"), compile=False)
    tokenizer = Tokenizer(os.path.join(output, "vocab.txt"), do_lower_case=info["do_lower_case"])
    trans = crf_transitions(model) if info["head"] == "crf" else None
    return model, tokenizer, info, trans


def predict_ner(model, tokenizer, info: dict, trans, texts: list[str], batch_size: int = 32,
                progress: bool = False) -> list[list[dict]]:
    """Entities of each text (truncated to the model's maxlen), in characters of the text."""
    from bert4keras.cli import Progress
    from bert4keras.snippets import sequence_padding

    results = []
    bar = Progress(len(texts), "text") if progress else None
    for begin in range(0, len(texts), batch_size):
        chunk = texts[begin:begin + batch_size]
        ids, segments, offsets = tokenizer.encode_batch(chunk, maxlen=info["maxlen"], return_offsets=True)
        length = -(-max(map(len, ids)) // 16) * 16
        output = np.asarray(model.predict_on_batch([sequence_padding(ids, length),
                                                    sequence_padding(segments, length)]), "float32")
        results += [decode_entities(row, t, o, info, trans) for row, t, o in zip(output, chunk, offsets)]
        if bar is not None:
            bar.add(len(chunk))
    return results


def entity_f1(predicted: list[list], gold: list[list]) -> dict:
    """Micro precision / recall / F1 over exact (start, end, label) matches."""
    p = [{(e["start"], e["end"], e["label"]) if isinstance(e, dict) else tuple(e) for e in x} for x in predicted]
    g = [{tuple(e) for e in x} for x in gold]
    hits = sum(len(a & b) for a, b in zip(p, g))
    n_pred, n_gold = sum(map(len, p)), sum(map(len, g))
    precision = hits / n_pred if n_pred else 0.0
    recall = hits / n_gold if n_gold else 0.0
    f1 = 2 * hits / (n_pred + n_gold) if n_pred + n_gold else 1.0
    return {"entity_precision": precision, "entity_recall": recall, "entity_f1": f1}


def train_ner(data: list[tuple[str, list[Entity]]], model_dir: str, output: str, head: str = "crf",
              epochs: int = 1, maxlen: int = 64, batch_size: int = 32, learning_rate: float = 5e-5,
              eval_fraction: float = 0.1, max_train: int | None = None, seed: int = 42) -> dict:
    """Fine-tune an encoder for NER, report held-out entity F1, save to ``output``."""
    import keras

    from bert4keras.cli import find_model_files, vocab_is_lowercase
    from bert4keras.snippets import sequence_padding
    from bert4keras.tokenizers import Tokenizer

    config, checkpoint, vocab = find_model_files(model_dir)
    lowercase = vocab_is_lowercase(model_dir, vocab)
    tokenizer = Tokenizer(vocab, do_lower_case=lowercase)
    labels = sorted({label for _, entities in data for _, _, label in entities})
    if not labels:
        raise ValueError("the NER data holds no entities")
    data = list(data)
    random.Random(seed).shuffle(data)
    n_eval = max(1, int(len(data) * eval_fraction)) if len(data) > 1 else 0
    eval_data, train_data = data[:n_eval], data[n_eval:][:max_train]
    print(f"{len(train_data)} training and {len(eval_data)} held-out texts; {head} head; labels: {labels}")
    texts = [t for t, _ in train_data]
    ids, segments, offsets = tokenizer.encode_batch(texts, maxlen=maxlen, return_offsets=True)

    keras.utils.set_random_seed(seed)
    model, loss = build_ner_model(config, checkpoint, len(labels), head)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)

    def batches():
        rng = np.random.default_rng(seed)
        while True:
            order = rng.permutation(len(ids))
            for begin in range(0, len(order) - batch_size + 1, batch_size):
                rows = order[begin:begin + batch_size]
                length = -(-max(len(ids[i]) for i in rows) // 16) * 16
                x = [sequence_padding([ids[i] for i in rows], length),
                     sequence_padding([segments[i] for i in rows], length)]
                if head == "crf":
                    y = sequence_padding([crf_tags(offsets[i], train_data[i][1], labels) for i in rows], length)
                else:
                    y = np.stack([pointer_targets(offsets[i], train_data[i][1], labels, length) for i in rows])
                yield x, y

    batch_size = min(batch_size, len(ids))
    started = time.time()
    model.fit(batches(), steps_per_epoch=max(1, len(ids) // batch_size), epochs=epochs, verbose=1)
    info = {"task": "ner", "head": head, "labels": labels, "maxlen": maxlen, "do_lower_case": lowercase}
    trans = crf_transitions(model) if head == "crf" else None
    result = {"train_seconds": time.time() - started}
    if eval_data:
        predicted = predict_ner(model, tokenizer, info, trans, [t for t, _ in eval_data])
        result.update(entity_f1(predicted, [e for _, e in eval_data]))
        print(f"held-out entity F1 {result['entity_f1']:.3f}; training took {result['train_seconds']:.0f}s")
    save_ner(model, output, info, vocab)
    print(f"saved to {output}/ (model.keras, vocab.txt, {NER_FILE})")
    return result
