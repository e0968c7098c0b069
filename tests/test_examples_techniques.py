"""The LIC2020 / CCKS 2019 entity linking / DGCNN QA examples: their pure-Python helpers (labels, decoding,
metrics, features) against hand-computed values, and each script run end to end on generated sample data."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from bert4keras.backend import K
from bert4keras.layers import LayerNormalization
from bert4keras.tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, 'examples')


def load_example(name):
    """Import an example script as a module (its training only runs under __main__)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ie = load_example('task_lic2020_triple_extraction')
ee = load_example('task_lic2020_event_extraction')
el = load_example('task_entity_linking_ccks2019')
qa = load_example('task_reading_comprehension_dgcnn')
sample_data = load_example('techniques_sample_data')


@pytest.fixture(scope='module')
def tokenizer(chinese_vocab):
    return Tokenizer(chinese_vocab, do_lower_case=True)


# --- triple extraction -------------------------------------------------------------------------------

def test_search_first_occurrence_or_minus_one():
    assert ie.search([3, 4], [1, 3, 4, 3, 4]) == 1
    assert ie.search([4, 1], [1, 3, 4, 3, 4]) == -1
    assert ie.search([4, 5], [1, 3, 4]) == -1


def test_build_labels_marks_every_subject_and_the_sampled_subjects_objects(tokenizer):
    predicate2id = {'作者': 0, '出版社': 1, '改编自': 2}
    text = '九玄珠是龙马写的书，天下由东方出版'
    token_ids, _ = tokenizer.encode(text)
    spo_list = [('九玄珠', '作者', '龙马'), ('九玄珠', '改编自', '龙马'), ('天下', '出版社', '东方'),
                ('不在文中', '作者', '龙马')]  # the last one is dropped: its subject is not in the text
    # token positions ([CLS] is 0): 九玄珠 1-3, 龙马 5-6, 天下 11-12, 东方 14-15
    seen = set()
    for seed in range(20):
        np.random.seed(seed)
        subject_labels, (start, end), object_labels = ie.build_labels(token_ids, spo_list, tokenizer, predicate2id)
        assert list(zip(*np.nonzero(subject_labels))) == [(1, 0), (3, 1), (11, 0), (12, 1)]
        assert start in (1, 11) and end in (3, 12) and end >= start
        expected = {(1, 3): [(5, 0, 0), (6, 0, 1), (5, 2, 0), (6, 2, 1)],
                    (11, 12): [(14, 1, 0), (15, 1, 1)], (1, 12): []}[(start, end)]
        assert sorted(zip(*np.nonzero(object_labels))) == sorted(expected)
        seen.add((start, end))
    assert seen == {(1, 3), (11, 12), (1, 12)}  # (1, 12) is the deliberate negative subject
    assert ie.build_labels(token_ids, [('没有', '作者', '龙马')], tokenizer, predicate2id) is None


def test_power_trick_and_masked_loss():
    p = np.array([0.3, 0.7])
    bce = lambda t, q: K.eval(K.binary_crossentropy(K.constant(t), K.constant(q)))
    np.testing.assert_allclose(bce([1., 1.], p**2), 2 * bce([1., 1.], p), rtol=1e-5)

    rng = np.random.default_rng(0)
    b, length, num_predicates = 2, 6, 3
    token_ids = np.array([[101, 5, 6, 7, 102, 0], [101, 8, 102, 0, 0, 0]])
    inputs = [rng.integers(0, 2, (b, length, 2)).astype('float32'),
              rng.integers(0, 2, (b, length, num_predicates, 2)).astype('float32'),
              rng.uniform(0.1, 0.9, (b, length, 2)).astype('float32'),
              rng.uniform(0.1, 0.9, (b, length, num_predicates, 2)).astype('float32'), token_ids]
    loss = ie.TotalLoss([2, 3])
    before = float(K.eval(loss.compute_loss(inputs)))
    inputs[2][token_ids == 0] = 0.5
    inputs[3][token_ids == 0] = 0.01
    assert float(K.eval(loss.compute_loss(inputs))) == pytest.approx(before, rel=1e-6)
    mask = token_ids != 0
    bce_np = lambda t, q: -(t * np.log(q) + (1 - t) * np.log(1 - q))
    expected = (bce_np(inputs[0], inputs[2]).mean(2)[mask].mean()
                + bce_np(inputs[1], inputs[3]).mean(3).sum(2)[mask].mean())
    assert before == pytest.approx(expected, rel=1e-4)


def test_decoding_from_probability_arrays():
    subject_preds = np.zeros((10, 2))
    subject_preds[[2, 7], 0] = 0.9
    subject_preds[[3, 8], 1] = 0.8
    subject_preds[0] = subject_preds[9] = 0.99  # [CLS] and [SEP]
    subject_preds[5, 0] = 0.55  # below the start threshold
    assert ie.decode_subjects(subject_preds) == [(2, 3), (7, 8)]

    object_preds = np.zeros((10, 3, 2))
    object_preds[4, 1, 0] = 0.9
    object_preds[[5, 6], 1, 1] = 0.9  # the first end of the same predicate wins
    object_preds[4, 2, 1] = 0.9  # an end of another predicate is not paired
    object_preds[3, 1, 1] = 0.9  # an end before the start is not paired
    assert ie.decode_objects(object_preds) == [(4, 1, 5)]


def test_conditional_layer_norm_starts_as_plain_layer_norm():
    x = np.random.default_rng(1).normal(size=(2, 5, 8)).astype('float32')
    cond = np.random.default_rng(2).normal(size=(2, 16)).astype('float32')
    plain = LayerNormalization()(x)
    conditional = LayerNormalization(conditional=True)([x, cond])
    np.testing.assert_allclose(K.eval(conditional), K.eval(plain), atol=1e-5)


def test_triple_metric(tokenizer):
    R = [('a', 'p', 'b'), ('c', 'q', 'd')]
    T = [('a', 'p', 'b'), ('e', 'r', 'f'), ('g', 's', 'h')]
    f1, precision, recall = ie.prf(ie.triple_counts(R, T, tokenizer))
    assert precision == pytest.approx(0.5, abs=1e-8)
    assert recall == pytest.approx(1 / 3, abs=1e-8)
    assert f1 == pytest.approx(0.4, abs=1e-8)
    # compared through the tokenizer: case and full-width letters do not matter, the predicate does
    assert ie.triple_counts([('ABC', 'p', '九玄珠')], [('abc', 'p', '九玄珠')], tokenizer) == (1, 1, 1)
    assert ie.triple_counts([('abc', 'q', '九玄珠')], [('abc', 'p', '九玄珠')], tokenizer) == (0, 1, 1)
    assert ie.prf((0, 0, 3)) == pytest.approx((0.0, 1.0, 0.0), abs=1e-9)  # no predictions: no division by zero


def test_lic2020_slots_split_and_combine(tmp_path):
    record = {'predicate': '饰演', 'subject': '周迅', 'object': {'@value': 'X', 'inWork': 'Y'}}
    triples = ie.split_spoes([record, {'predicate': '作者', 'subject': 'S', 'object': 'O'}])
    assert triples == [('周迅', '饰演_@value', 'X'), ('周迅', '饰演_inWork', 'Y'), ('S', '作者_@value', 'O')]
    assert ie.combine_spoes(triples) == [('周迅', '饰演', {'@value': 'X', 'inWork': 'Y'}), ('S', '作者', {'@value': 'O'})]

    sample_data.lic2020_ie(str(tmp_path), n_train=4, n_dev=2)
    predicate2id, id2predicate, schemas = ie.load_schema(str(tmp_path / 'schema.json'))
    assert predicate2id == {'作者_@value': 0, '出生地_@value': 1, '出品公司_@value': 2,
                            '饰演_@value': 3, '饰演_inWork': 4}
    assert id2predicate[4] == '饰演_inWork' and schemas['饰演']['subject_type'] == '娱乐人物'
    for d in ie.load_data(str(tmp_path / 'train_data.json')):
        for s, p, o in d['spo_list']:
            assert p in predicate2id and s in d['text'] and o in d['text']


def test_rematch_recovers_original_substrings(tokenizer):
    text = 'Hello 世界123'
    tokens = tokenizer.tokenize(text)
    pieces = [text[m[0]:m[-1] + 1] for m in tokenizer.rematch(text, tokens) if m]
    assert pieces == ['Hello', '世', '界', '123']


# --- event extraction ---------------------------------------------------------------------------------

def test_event_labels_tags_and_soft_metric(tokenizer, tmp_path):
    sample_data.lic2020_ee(str(tmp_path), n_train=4, n_dev=2)
    label2id, id2label = ee.load_schema(str(tmp_path / 'event_schema.json'))
    assert label2id[('组织关系-裁员', '裁员方')] == 0 and id2label[5] == ('竞赛行为-夺冠', '时间')
    text, arguments = ee.load_data(str(tmp_path / 'train.json'))[0]
    assert all(a in text for a in arguments)

    label2id = {('裁员', '裁员方'): 0, ('裁员', '人数'): 1}
    token_ids, _ = tokenizer.encode('华谊兄弟裁员200人')  # [CLS] 华 谊 兄 弟 裁 员 200 人 [SEP]
    labels = ee.bio_labels(token_ids, {'华谊兄弟': ('裁员', '裁员方'), '200人': ('裁员', '人数')}, tokenizer, label2id)
    assert labels == [0, 1, 2, 2, 2, 0, 0, 3, 4, 0]
    assert ee.tag_spans(labels) == [(0, 1, 4), (1, 7, 8)]
    assert ee.tag_spans([0, 2, 1, 4, 3, 4]) == [(0, 2, 2), (1, 4, 5)]  # stray or mismatched I tags start nothing

    gold = {'华谊兄弟': ('裁员', '裁员方'), '200人': ('裁员', '人数')}
    assert ee.soft_counts(gold, gold) == (2.0, 2, 2)
    X, Y, Z = ee.soft_counts({'华谊': ('裁员', '裁员方'), '三人': ('裁员', '时间')}, gold)
    assert (Y, Z) == (2, 2) and X == pytest.approx(2 * 2 / (2 + 4))  # lcs('华谊', '华谊兄弟') = 2


# --- entity linking -----------------------------------------------------------------------------------

def test_linking_features():
    assert el.char_in_description('南京南站', '南京是江苏省会') == [1, 1, 1, 0]
    assert el.word_in_description(['南京', '南站'], ['南京', '是', '江苏', '省会']) == [1, 1, 0, 0]
    entry = {'data': [{'predicate': '所属城市', 'object': '南京'}, {'predicate': '摘要', 'object': '一座车站'}]}
    assert el.word_is_object(['南京', '南站'], entry) == [1, 1, 0, 0]
    assert el.entity_description(entry) == '所属城市：南京；摘要：一座车站'


def test_max_matching_segmentation_and_alias_channel():
    words = {'南京', '南京南站', '江苏'}
    assert el.max_match('南京南站在江苏', words, 4) == [(0, 3), (5, 6)]
    assert el.segment('去南京南站', words, 4) == ['去', '南京南站']
    assert el.segment('南京是江苏省会', words, 4) == ['南京', '是', '江苏', '省', '会']
    assert el.alias_feature('去江苏玩', words, 4) == [0, 1, 1, 0]


def test_alias_filter_and_link_prior():
    aliases = {'苹果': ['1', '2'], '胜利': ['3'], '长江': ['4']}
    train = [{'text': '苹果发布新机', 'mentions': [('苹果', 0, '1')]},
             {'text': '我吃了苹果', 'mentions': [('苹果', 3, '2')]},
             {'text': '胜利就在眼前', 'mentions': []},
             {'text': '胜利了', 'mentions': []},
             {'text': '胜利者', 'mentions': [('胜利', 0, 'NIL')]}]
    # 苹果: 2 of 2 occurrences labelled; 胜利: 1 of 3; 长江 never occurs
    assert el.filter_aliases(train, aliases, min_ratio=0.5) == {'苹果', '长江'}
    assert el.filter_aliases(train, aliases, min_ratio=0.3) == {'苹果', '胜利', '长江'}
    prior = el.link_prior(train + [{'text': '苹果', 'mentions': [('苹果', 0, '1')]}])
    assert prior == {'苹果': {'1': 2, '2': 1}}
    assert el.narrow_candidates('苹果', ['1', '2', '9'], prior, top=1) == ['1']
    assert el.narrow_candidates('苹果', ['1', '2', '9'], prior, top=5) == ['1', '2']
    assert el.narrow_candidates('胜利', ['3'], prior) == ['3']  # never linked in training: all candidates


def test_span_decoding():
    preds = np.zeros((8, 2))
    preds[[1, 5], 0] = 0.9
    preds[[2, 6], 1] = 0.9
    preds[7, 0] = 0.9  # a start with no end after it
    assert el.decode_spans(preds) == [(1, 2), (5, 6)]


def test_sample_kb_and_records_are_consistent(tmp_path):
    sample_data.ccks2019_el(str(tmp_path), n_train=8, n_dev=2)
    entities, aliases = el.load_kb(str(tmp_path / 'kb_data'))
    assert len(aliases['林海音']) == 2  # homonyms: the same name, two entities
    for d in el.load_data(str(tmp_path / 'train.json')):
        for mention, offset, kb_id in d['mentions']:
            assert d['text'][offset:offset + len(mention)] == mention
            assert kb_id == 'NIL' or kb_id in aliases[mention]


def test_linker_inputs_and_candidate_scores(tmp_path, tokenizer, monkeypatch):
    sample_data.ccks2019_el(str(tmp_path), n_train=8, n_dev=2)
    entities, aliases = el.load_kb(str(tmp_path / 'kb_data'))
    train = el.load_data(str(tmp_path / 'train.json'))
    linker = el.Linker(entities, aliases, train, tokenizer)
    text = '林海音在南京签售新书'
    singer, writer = aliases['林海音']
    ids, channel = linker.text_inputs(text)
    assert len(ids) == len(text) and channel == [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    mention, features, description = linker.link_inputs(text, (0, 2), writer)
    assert mention == [1, 1, 1] + [0] * 7 and features.shape == (10, 3)
    assert features[:3].tolist() == [[1, 1, 0]] * 3  # the name is in the description, not an attribute value
    assert len(description) == len(el.entity_description(entities[writer]))
    assert set(linker.candidates('林海音')) <= {singer, writer}

    monkeypatch.setattr(el, 'hidden_size', 8)
    _, _, linking_model = el.build_models(tokenizer.vocab_size)
    scores = el.link_scores(text, (0, 2), [singer, writer], linker, linking_model)
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))
    # the same candidate scores the same alone or in a batch (padding does not leak between them)
    alone = el.link_scores(text, (0, 2), [writer], linker, linking_model)
    assert alone[0] == pytest.approx(scores[1], abs=1e-5)


# --- DGCNN reading comprehension ----------------------------------------------------------------------

def test_answer_labels_mark_every_occurrence():
    labels = qa.answer_labels('甲乙丙甲乙', {'甲乙', '丙'}, 10)
    assert list(zip(*np.nonzero(labels))) == [(0, 0), (1, 1), (2, 0), (2, 1), (3, 0), (4, 1)]
    assert not qa.answer_labels('甲乙丙', {'甲乙'}, 1).any()  # the answer is cut off


def test_span_search_vote_and_metric():
    starts, ends = np.array([0.1, 0.9, 0.2, 0.0]), np.array([0.0, 0.3, 0.8, 0.9])
    score, i, j = qa.best_span(starts, ends, max_len=2)
    assert (i, j) == (1, 2) and score == pytest.approx(0.72)
    assert qa.best_span(starts, ends, max_len=3)[1:] == (1, 3)
    assert qa.vote([(0.5, '甲'), (0.3, '乙'), (0.3, '乙'), (0.05, '丙')]) == '乙'
    assert qa.vote([(0.05, '丙')]) == ''
    assert qa.char_f1('林海音', '林海音') == 1.0
    assert qa.char_f1('林海', '林海音') == pytest.approx(0.8)
    assert qa.char_f1('', '林海音') == 0.0
    assert qa.gold_answers({'passages': [{'answer': '甲 乙'}, {'answer': ''}, {'answer': '甲'}]}) == {'甲', '乙'}


def test_attention_pooling_masks_and_averages():
    pooling = qa.AttentionPooling1D(4)
    x = np.tile(np.array([1.0, -2.0, 3.0], dtype='float32'), (2, 5, 1))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype='float32')
    np.testing.assert_allclose(K.eval(pooling(x, mask=mask)), x[:, 0], rtol=1e-5)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype('float32')
    changed = x.copy()
    changed[0, 3:] = 100.0  # padding does not reach the pooled vector
    np.testing.assert_allclose(K.eval(pooling(changed, mask=mask))[0],
                               K.eval(pooling(x, mask=mask))[0], rtol=1e-5)


def test_closed_global_gate_silences_every_pointer(monkeypatch):
    monkeypatch.setattr(qa, 'hidden_size', 8)
    _, model = qa.build_models(50)
    gate = model.get_layer('Global-Gate')
    kernel, bias = gate.get_weights()
    gate.set_weights([np.zeros_like(kernel), np.full_like(bias, -50.0)])
    ids = np.random.default_rng(0).integers(1, 50, (2, 12))
    starts, ends, g = model.predict([ids[:, :5], ids], verbose=0)
    assert np.all(g < 1e-20) and np.all(starts < 1e-20) and np.all(ends < 1e-20)
    gate.set_weights([np.zeros_like(kernel), np.full_like(bias, 50.0)])
    starts, _, _ = model.predict([ids[:, :5], ids], verbose=0)
    assert np.all(starts > 0)


# --- the scripts, end to end on sample data -----------------------------------------------------------

SCRIPTS = {
    'ee': ('task_lic2020_event_extraction', 'lic2020_ee', 'ee_pred.json', 'f1'),
    'ie': ('task_lic2020_triple_extraction', 'lic2020_ie', 'dev_pred.json', 'f1'),
    'el': ('task_entity_linking_ccks2019', 'ccks2019_el', 'el_pred.json', 'f1'),
    'qa': ('task_reading_comprehension_dgcnn', 'webqa', 'qa_pred.json', 'score'),
}


def run_smoke(tmp_path, key, backend):
    script, generator, predictions, metric = SCRIPTS[key]
    data = tmp_path / 'data'
    getattr(sample_data, generator)(str(data), n_train=16, n_dev=4)
    env = {**os.environ, 'KERAS_BACKEND': backend, 'PYTHONPATH': ROOT}
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, script + '.py'), '--data-dir', str(data),
                             '--smoke'], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = [line for line in result.stdout.splitlines() if line.startswith('epoch ')]
    assert len(epochs) == 2, result.stdout
    for line in epochs:
        values = dict(item.split(': ') for item in line.split(': ', 1)[1].split(', '))
        assert math.isfinite(float(values['loss'])) and 0.0 <= float(values[metric]) <= 1.0
    with open(tmp_path / predictions, encoding='utf-8') as f:
        assert len([json.loads(line) for line in f]) == 4
    assert (tmp_path / 'best_model.weights.h5').exists()


@pytest.mark.slow
@pytest.mark.parametrize('key', sorted(SCRIPTS))
def test_example_smoke_run_jax(tmp_path, key):
    run_smoke(tmp_path, key, 'jax')


@pytest.mark.slow
def test_example_smoke_run_torch(tmp_path):
    run_smoke(tmp_path, 'qa', 'torch')


def test_missing_data_explains_the_fix(tmp_path):
    script = os.path.join(EXAMPLES, 'task_lic2020_triple_extraction.py')
    result = subprocess.run([sys.executable, script, '--data-dir', str(tmp_path / 'absent')], cwd=tmp_path,
                            env={**os.environ, 'PYTHONPATH': ROOT}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert 'missing data file(s)' in result.stderr and 'techniques_sample_data.py' in result.stderr
    assert 'Traceback' not in result.stderr
