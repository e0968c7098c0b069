"""The command line (`python -m bert4keras ...`), run in-process through `main()` on tiny models:
file reading, atomic saves, encode / train / eval / predict / generate / convert, and --help."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

from bert4keras import cli

WORDS = ("the cat sat on a mat while rain fell over quiet hills and people sang old songs "
         "about rivers trains coffee stars music winter light paris london anna tom").split()
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "hidden_act": "gelu", "max_position_embeddings": 64, "type_vocab_size": 2}


def write_vocab(root) -> list[str]:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(WORDS))
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return vocab


def make_encoder_dir(root, application: str = "encoder", seed: int = 0, **build) -> str:
    """A tiny random BERT saved as a Google checkpoint directory (bert_config.json, bert_model.ckpt, vocab.txt)."""
    from bert4keras.models import build_transformer_model

    root.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab(root)
    (root / "bert_config.json").write_text(json.dumps({"vocab_size": len(vocab), **TINY}), encoding="utf-8")
    keras.utils.set_random_seed(seed)
    options = {} if application == "encoder" else {"application": application}
    model = build_transformer_model(str(root / "bert_config.json"), None, return_keras_model=False,
                                    **options, **build)
    model.save_weights_as_checkpoint(str(root / "bert_model.ckpt"))
    return str(root)


def make_ner_dir(root, head: str, seed: int = 0) -> str:
    """A tiny random NER model saved the way `train --task ner` saves it."""
    from bert4keras.cli_ner import build_ner_model, save_ner

    encoder = make_encoder_dir(root / "encoder", seed=seed)
    keras.utils.set_random_seed(seed)
    model, _ = build_ner_model(os.path.join(encoder, "bert_config.json"), None, 2, head)
    info = {"task": "ner", "head": head, "labels": ["PER", "PLACE"], "maxlen": 24, "do_lower_case": True}
    save_ner(model, str(root / "out"), info, os.path.join(encoder, "vocab.txt"))
    return str(root / "out")


def run(capsys, *argv: str) -> str:
    assert cli.main(list(argv)) == 0
    return capsys.readouterr().out


# --------------------------------------------------------------------------- reading files


def test_tsv_quoted_tab_is_kept(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text('pos\t"a tab\there"\nneg\tplain text\n', encoding="utf-8")
    assert cli.read_labelled_file(str(path)) == [("a tab\there", "pos"), ("plain text", "neg")]


def test_header_row_is_not_data(tmp_path):
    for header in ("text\tlabel", "sentence\tlabel", "Text\tLabel"):
        path = tmp_path / "data.tsv"
        path.write_text(f"{header}\ngood film\tpos\nbad film\tneg\n", encoding="utf-8")
        assert cli.read_labelled_file(str(path)) == [("good film", "pos"), ("bad film", "neg")], header


def test_csv_with_quotes_and_commas(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('label,text\npos,"good, really ""good"""\n', encoding="utf-8")
    assert cli.read_labelled_file(str(path)) == [('good, really "good"', "pos")]


def test_undecodable_bytes_name_the_file_and_line(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_bytes("pos\tok\nneg\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"data\.tsv:2: byte 0xe9 is not valid utf-8.*--encoding"):
        cli.read_labelled_file(str(path))
    assert cli.read_labelled_file(str(path), encoding="latin-1")[1] == ("caf\xe9", "neg")


def test_short_row_names_the_line(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("pos\tfine\njustone\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"data\.tsv:2: 1 column"):
        cli.read_labelled_file(str(path))


def test_ner_records_in_all_three_layouts(tmp_path):
    from bert4keras.cli_ner import read_ner_file

    path = tmp_path / "ner.jsonl"
    rows = [{"text": "anna in paris", "entities": [{"start": 0, "end": 4, "label": "PER"}, [8, 13, "PLACE"]]},
            {"text": "tom", "tags": ["B-PER", "I-PER", "I-PER"]},
            {"tokens": ["anna", "likes", "london"], "tags": ["B-PER", "O", "B-PLACE"]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    assert read_ner_file(str(path)) == [
        ("anna in paris", [(0, 4, "PER"), (8, 13, "PLACE")]), ("tom", [(0, 3, "PER")]),
        ("anna likes london", [(0, 4, "PER"), (11, 17, "PLACE")])]
    path.write_text('{"text": "abc", "entities": [[1, 9, "X"]]}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"ner\.jsonl:1: entities\[0\] spans \[1, 9\)"):
        read_ner_file(str(path))


# --------------------------------------------------------------------------- atomic save


def test_failed_save_keeps_the_previous_model(tmp_path, monkeypatch):
    from bert4keras.cli import build_classifier, load_classifier, save_classifier

    encoder = make_encoder_dir(tmp_path / "enc")
    config = os.path.join(encoder, "bert_config.json")
    vocab = os.path.join(encoder, "vocab.txt")
    first = build_classifier(config, None, 2)
    save_classifier(first, str(tmp_path / "out"), ["a", "b"], 16, True, vocab)
    before = (tmp_path / "out" / "model.keras").read_bytes()

    def full_disk(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_classifier(build_classifier(config, None, 2), str(tmp_path / "out"), ["a", "b"], 16, True, vocab)
    monkeypatch.undo()
    assert (tmp_path / "out" / "model.keras").read_bytes() == before
    assert sorted(os.listdir(tmp_path / "out")) == ["classifier.json", "model.keras", "vocab.txt"]
    model, _, info = load_classifier(str(tmp_path / "out"))
    assert info["labels"] == ["a", "b"]
    for a, b in zip(model.weights, first.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


# --------------------------------------------------------------------------- subcommands


def test_every_subcommand_has_help(capsys):
    for command in ("encode", "train", "eval", "predict", "generate", "convert", "serve", "demo"):
        with pytest.raises(SystemExit) as exit_:
            cli.main([command, "--help"])
        assert exit_.value.code == 0
        assert "usage: python -m bert4keras " + command in capsys.readouterr().out


def test_encode_npy_and_jsonl_match_the_model(tmp_path, capsys):
    from bert4keras.models import build_transformer_model
    from bert4keras.snippets import sequence_padding
    from bert4keras.tokenizers import Tokenizer

    encoder = make_encoder_dir(tmp_path / "enc")
    texts = ["the cat sat", "people sang old songs about rivers"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    run(capsys, "encode", "--model-dir", encoder, "--input", str(tmp_path / "in.txt"), "-o",
        str(tmp_path / "v.npy"))
    got = np.load(tmp_path / "v.npy")
    lines = run(capsys, "encode", "--model-dir", encoder, *texts).splitlines()
    assert [json.loads(line)["text"] for line in lines] == texts

    model = build_transformer_model(os.path.join(encoder, "bert_config.json"),
                                    os.path.join(encoder, "bert_model.ckpt"))
    tokenizer = Tokenizer(os.path.join(encoder, "vocab.txt"), do_lower_case=True)
    ids, segments = tokenizer.encode_batch(texts)
    output = np.asarray(model.predict_on_batch([sequence_padding(ids), sequence_padding(segments)]))
    want = np.stack([output[i, :len(x)].mean(0) for i, x in enumerate(ids)])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose([json.loads(line)["embedding"] for line in lines], want, atol=1e-5)


def test_train_eval_predict_classifier(tmp_path, capsys):
    encoder = make_encoder_dir(tmp_path / "enc")
    rng = np.random.default_rng(0)
    rows = ["text\tlabel"] + [f"{' '.join(rng.choice(WORDS, 5))}\t{'pos' if i % 2 else 'neg'}" for i in range(40)]
    (tmp_path / "d.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = str(tmp_path / "out")
    run(capsys, "train", "--data", str(tmp_path / "d.tsv"), "--model-dir", encoder, "--output", out,
        "--batch-size", "8", "--maxlen", "16")
    scores = json.loads(run(capsys, "eval", "--output", out, "--data", str(tmp_path / "d.tsv")))
    texts = [r.split("\t")[0] for r in rows[1:]]
    gold = [r.split("\t")[1] for r in rows[1:]]
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    answers = [json.loads(line) for line in run(capsys, "predict", "--output", out, "--input",
                                                  str(tmp_path / "t.txt")).splitlines()]
    assert [a["text"] for a in answers] == texts
    assert all(abs(sum(a["scores"].values()) - 1) < 1e-4 for a in answers)
    assert scores == cli.classification_scores(gold, [a["label"] for a in answers])


def test_classification_scores():
    scores = cli.classification_scores(["a", "a", "b", "c"], ["a", "b", "b", "b"])
    assert scores["accuracy"] == 0.5
    assert scores["macro_f1"] == pytest.approx(np.mean([2 / 3, 2 / 4, 0.0]))


@pytest.mark.slow
@pytest.mark.parametrize("head", ["crf", "globalpointer"])
def test_train_ner_learns_and_predict_matches_eval(tmp_path, capsys, head):
    encoder = make_encoder_dir(tmp_path / "enc")
    rng = np.random.default_rng(1)
    records = []
    for _ in range(96):  # names are always entities, every other word never is
        words = list(rng.choice(WORDS[:-4], 6))
        slot, name = int(rng.integers(0, 6)), str(rng.choice(WORDS[-4:]))
        words[slot] = name
        tags = ["O"] * 6
        tags[slot] = "B-PER" if name in ("anna", "tom") else "B-PLACE"
        records.append({"tokens": words, "tags": tags})
    (tmp_path / "ner.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    out = str(tmp_path / "out")
    run(capsys, "train", "--task", "ner", "--head", head, "--data", str(tmp_path / "ner.jsonl"),
        "--model-dir", encoder, "--output", out, "--batch-size", "16", "--maxlen", "16", "--epochs", "6",
        "--learning-rate", "3e-3")
    scores = json.loads(run(capsys, "eval", "--output", out, "--data", str(tmp_path / "ner.jsonl")))
    assert scores["entity_f1"] > 0.8, scores
    texts = [" ".join(r["tokens"]) for r in records]
    answers = [json.loads(line) for line in run(capsys, "predict", "--output", out, *texts).splitlines()]
    for answer in answers:
        for e in answer["entities"]:
            assert answer["text"][e["start"]:e["end"]] == e["text"]
    from bert4keras.cli_ner import entity_f1, read_ner_file

    gold = [e for _, e in read_ner_file(str(tmp_path / "ner.jsonl"))]
    assert entity_f1([a["entities"] for a in answers], gold)["entity_f1"] == scores["entity_f1"]


def test_generate_jsonl_and_stream_match_in_process(tmp_path, capsys):
    from bert4keras.cli import answer_text, load_generator, prompt_ids

    lm = make_encoder_dir(tmp_path / "lm", application="lm")
    prompts = ["the cat", "people sang old"]
    rows = [json.loads(line) for line in run(capsys, "generate", "--model-dir", lm, "--max-new-tokens", "6",
                                             *prompts).splitlines()]
    model, tokenizer, application = load_generator(lm)
    want = model.generate([prompt_ids(tokenizer, p, application) for p in prompts], 6,
                          end_id=tokenizer._token_end_id)
    assert [r["ids"] for r in rows] == want
    assert [r["text"] for r in rows] == [answer_text(tokenizer, ids) for ids in want]
    streamed = run(capsys, "generate", "--model-dir", lm, "--max-new-tokens", "6", "--stream", prompts[0])
    assert streamed.rstrip("\n") == tokenizer.decode(want[0])
    sampled = [json.loads(line) for line in run(capsys, "generate", "--model-dir", lm, "--max-new-tokens", "6",
                                                "--top-k", "5", "--seed", "3", prompts[0]).splitlines()]
    assert sampled[0]["ids"] == model.generate([prompt_ids(tokenizer, prompts[0], application)], 6, top_k=5,
                                               seed=3, end_id=tokenizer._token_end_id)[0]
    with pytest.raises(SystemExit, match="top_p must be in"):
        cli.main(["generate", "--model-dir", lm, "--top-p", "2", prompts[0]])


def test_convert_round_trip_is_bit_exact_and_hf_agrees(tmp_path, capsys):
    from bert4keras.checkpoints import open_checkpoint
    from bert4keras.models import build_transformer_model

    google = make_encoder_dir(tmp_path / "google", with_pool=True, with_mlm=True)
    cli.main(["convert", google, str(tmp_path / "hf")])
    cli.main(["convert", str(tmp_path / "hf"), str(tmp_path / "back"), "--to", "google"])
    capsys.readouterr()
    original = open_checkpoint(os.path.join(google, "bert_model.ckpt"))
    back = open_checkpoint(str(tmp_path / "back" / "bert_model.ckpt"))
    assert sorted(back.names()) == sorted(original.names())
    for name in original.names():
        a, b = original.get(name), back.get(name)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), name
    assert sorted(os.listdir(tmp_path / "hf")) == ["config.json", "model.safetensors", "vocab.txt"]

    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    hf = transformers.BertModel.from_pretrained(str(tmp_path / "hf")).eval()
    ours = build_transformer_model(os.path.join(google, "bert_config.json"), os.path.join(google, "bert_model.ckpt"))
    ids = np.array([[2, 10, 11, 12, 3, 0], [2, 13, 3, 0, 0, 0]])
    mask = (ids > 0).astype("int64")
    with torch.no_grad():
        want = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                  token_type_ids=torch.zeros_like(torch.tensor(ids))).last_hidden_state.numpy()
    got = np.asarray(ours.predict_on_batch([ids, np.zeros_like(ids)]))
    np.testing.assert_allclose(got * mask[..., None], want * mask[..., None], atol=1e-5)

    cli.main(["convert", google, str(tmp_path / "half"), "--dtype", "float16"])
    assert open_checkpoint(str(tmp_path / "half")).dtype("bert.embeddings.word_embeddings.weight") == "float16"
