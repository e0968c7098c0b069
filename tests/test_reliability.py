"""Bad inputs and interrupted writes: each test pins one entry of docs/reliability.md's catalogue."""

import os
import random
import signal
import time
import warnings

import keras
import numpy as np
import pytest

from bert4keras.checkpoints import CheckpointError, open_checkpoint, write_tf_checkpoint
from bert4keras.checkpoints import tf_checkpoint

# ---------------------------------------------------------------- checkpoint writes


def _tensors(value: float, size: int = 1 << 18) -> dict:
    """Two tensors whose content says which write they came from."""
    return {"bert/a": np.full(size, value, "float32"), "bert/b": np.full((size // 4, 4), value, "float32")}


def _which(prefix: str) -> float:
    """The value a loadable checkpoint holds; fails the test if it is mixed or unreadable."""
    with open_checkpoint(prefix) as reader:
        values = {float(reader.get(n).flat[0]) for n in ("bert/a", "bert/b")}
        full = {n: reader.get(n) for n in ("bert/a", "bert/b")}
    assert len(values) == 1, f"checkpoint mixes two writes: {values}"
    value = values.pop()
    for name, array in full.items():
        np.testing.assert_array_equal(array, _tensors(value)[name])
    return value


def _stray_files(folder) -> list:
    return sorted(n for n in os.listdir(folder) if n.endswith((".tmp", ".commit")))


def _kill_writer_repeatedly(tmp_path, kills: int, seed: int) -> dict:
    """Fork a writer that overwrites one checkpoint in a loop (values 1 and 2 in turn), SIGKILL it
    at a random moment, and check after every kill that the checkpoint is the old or the new one."""
    prefix = str(tmp_path / "model.ckpt")
    write_tf_checkpoint(prefix, _tensors(1.0))
    start = time.perf_counter()
    write_tf_checkpoint(prefix, _tensors(2.0))
    one_write = time.perf_counter() - start
    rng = random.Random(seed)
    seen = {1.0: 0, 2.0: 0}
    for _ in range(kills):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # JAX warns that fork() and its threads do not mix
            pid = os.fork()
        if pid == 0:  # the child only writes; it never returns into pytest
            try:
                value = 1.0
                while True:
                    write_tf_checkpoint(prefix, _tensors(value))
                    value = 3.0 - value
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0, 3 * one_write))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        seen[_which(prefix)] += 1
    write_tf_checkpoint(prefix, _tensors(1.0))
    assert _which(prefix) == 1.0
    assert _stray_files(tmp_path) == []
    return seen


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_checkpoint_overwrite_survives_kills(tmp_path):
    _kill_writer_repeatedly(tmp_path, kills=4, seed=0)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_checkpoint_overwrite_survives_many_kills(tmp_path):
    seen = _kill_writer_repeatedly(tmp_path, kills=60, seed=1)
    assert sum(seen.values()) == 60


def test_checkpoint_overwrite_killed_between_renames_loads_the_new_one(tmp_path, monkeypatch):
    prefix = str(tmp_path / "m")
    write_tf_checkpoint(prefix, _tensors(1.0, 64))
    real_replace = os.replace

    def die_before_index(src, dst):
        if str(dst).endswith(".index"):
            raise KeyboardInterrupt  # the process dies after the data file was renamed
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", die_before_index)
    with pytest.raises(KeyboardInterrupt):
        write_tf_checkpoint(prefix, {k: v[:64] * 0 + 2 for k, v in _tensors(2.0, 64).items()})
    monkeypatch.setattr(os, "replace", real_replace)
    with open_checkpoint(prefix) as reader:
        assert float(reader.get("bert/a")[0]) == 2.0
    assert _stray_files(tmp_path) == []


def test_checkpoint_overwrite_that_fails_keeps_the_old_one_and_no_temp_files(tmp_path, monkeypatch):
    prefix = str(tmp_path / "m")
    write_tf_checkpoint(prefix, _tensors(1.0, 64))

    def disk_full(f, items):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tf_checkpoint, "write_table", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_tf_checkpoint(prefix, _tensors(2.0, 64))
    with open_checkpoint(prefix) as reader:
        assert float(reader.get("bert/a")[0]) == 1.0
    assert _stray_files(tmp_path) == []


def test_checkpoint_journal_that_does_not_match_the_files_is_reported(tmp_path):
    prefix = str(tmp_path / "m")
    write_tf_checkpoint(prefix, _tensors(1.0, 64))
    with open(prefix + ".commit", "w") as f:
        f.write('{"m.index": 1}')
    with pytest.raises(CheckpointError, match="does not match the write journal"):
        open_checkpoint(prefix)


# ---------------------------------------------------------------- model inputs

from bert4keras.models import build_transformer_model  # noqa: E402

_CONFIG = dict(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=16, hidden_act="gelu", max_position_embeddings=16, type_vocab_size=2)


@pytest.fixture(scope="module")
def bert():
    model = build_transformer_model(**_CONFIG)
    model.compile(loss="mse", optimizer="sgd")
    return model


def _good(n: int = 2, length: int = 6):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 50, (n, length)).astype("int32"), np.zeros((n, length), "int32")]


def _with(index: int, array) -> list:
    x = _good()
    x[index] = np.asarray(array, "int32")
    return x


_BAD = {
    "too long": ([np.ones((2, 17), "int32"), np.zeros((2, 17), "int32")],
                 r"'Input-Token' of shape \(2, 17\): Embedding-Position: sequence length 17 exceeds the 16 positions"),
    "id past vocab": (_with(0, np.full((2, 6), 50)), r"'Input-Token' holds token id 50 at \(0, 0\), outside the vocabulary \[0, 50\)"),
    "negative id": (_with(0, [[1, 2, -1, 3, 4, 5]] * 2), r"holds token id -1 at \(0, 2\), outside the vocabulary \[0, 50\)"),
    "segment 2": (_with(1, [[0, 0, 0, 1, 1, 2]] * 2), r"'Input-Segment' holds segment id 2 at \(0, 5\), outside the segment types \[0, 2\)"),
    "short segments": (_with(1, np.zeros((2, 5))), r"'Input-Segment' has shape \(2, 5\) but 'Input-Token' has \(2, 6\)"),
    "batches differ": (_with(1, np.zeros((1, 6))), r"hold 2 and 1 samples"),
    "empty batch": ([np.zeros((0, 6), "int32")] * 2, r"empty batch \(shape \(0, 6\)\)"),
    "wrong rank": ([np.ones(6, "int32"), np.zeros(6, "int32")], r"has shape \(6,\), expected \(batch, any\)"),
}

_ENTRY_POINTS = {
    "predict_on_batch": lambda m, x: m.predict_on_batch(x),
    "__call__": lambda m, x: m(x),
    "train_on_batch": lambda m, x: m.train_on_batch(x, np.zeros((len(x[0]), 6, 8))),
    "test_on_batch": lambda m, x: m.test_on_batch(x, np.zeros((len(x[0]), 6, 8))),
    "predict": lambda m, x: m.predict(x, verbose=0),
    "predict generator": lambda m, x: m.predict((b for b in [(x,)]), verbose=0),
    "fit generator": lambda m, x: m.fit((b for b in [(x, np.zeros((len(x[0]), 6, 8)))]), verbose=0),
}


@pytest.fixture(scope="module")
def wrapped(bert):
    """What 0.11.5 scripts do: a head on the Transformer, in ``Model`` of bert4keras.backend's keras."""
    from bert4keras.backend import keras as keras2

    model = keras2.models.Model(bert.input, keras2.layers.Dense(8)(bert.output))
    model.compile(loss="mse", optimizer="sgd")
    return model


@pytest.mark.parametrize("which", ["transformer", "wrapped"])
@pytest.mark.parametrize("entry", list(_ENTRY_POINTS))
def test_every_entry_point_rejects_ids_past_the_vocabulary(bert, wrapped, entry, which):
    model = bert if which == "transformer" else wrapped
    with pytest.raises(ValueError, match=r"holds token id 50 at \(0, 0\)"):
        _ENTRY_POINTS[entry](model, _BAD["id past vocab"][0])


def test_a_wrapped_model_keeps_its_weights_after_a_rejected_fit(wrapped, tmp_path):
    x = _good()
    before = wrapped.predict_on_batch(x)
    with pytest.raises(ValueError, match="token id 50"):
        wrapped.fit(_BAD["id past vocab"][0], np.zeros((2, 6, 8)), verbose=0)
    np.testing.assert_allclose(wrapped.predict_on_batch(x), before, rtol=1e-6)
    wrapped.save_weights(str(tmp_path / "wrapped.weights"))


@pytest.mark.parametrize("case", list(_BAD))
def test_bad_input_is_rejected_and_the_model_still_predicts_and_saves(bert, case, tmp_path):
    x, message = _BAD[case]
    before = bert.predict_on_batch(_good())
    with pytest.raises(ValueError, match=message):
        bert.predict_on_batch(x)
    np.testing.assert_allclose(bert.predict_on_batch(_good()), before, rtol=1e-6)
    assert len(bert.get_weights()) == len(bert.weights)
    bert.save_weights(str(tmp_path / "w.weights.h5"))


def test_predict_and_evaluate_on_an_empty_batch_say_so(bert):
    empty = [np.zeros((0, 6), "int32")] * 2
    with pytest.raises(ValueError, match=r"'Input-Token' is an empty batch \(shape \(0, 6\)\)"):
        bert.predict(empty, verbose=0)
    with pytest.raises(ValueError, match=r"empty batch"):
        bert.evaluate(empty, np.zeros((0, 6, 8)), verbose=0)


def test_position_ids_input_is_checked_against_the_table():
    model = build_transformer_model(**_CONFIG, custom_position_ids=True)
    x = _good() + [np.tile(np.arange(6, dtype="int32") + 11, (2, 1))]
    with pytest.raises(ValueError, match=r"'Input-Position' holds position id 16 at \(0, 5\), outside the positions \[0, 16\)"):
        model.predict_on_batch(x)
    assert model.predict_on_batch(x[:2] + [x[2] - 11]).shape == (2, 6, 8)


def test_model_save_that_fails_midway_keeps_the_old_file_and_no_temp_file(bert, tmp_path, monkeypatch):
    path = tmp_path / "model.keras"
    bert.save(str(path))
    good = path.read_bytes()

    def disk_full(model, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        bert.save(str(path))
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["model.keras"]


# ---------------------------------------------------------------- tokenizers

from bert4keras.tokenizers import Tokenizer, load_vocab  # noqa: E402

_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world"]


@pytest.fixture
def tokenizer(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(_VOCAB) + "\n", encoding="utf-8")
    return Tokenizer(str(path))


@pytest.mark.parametrize("bad, message", [
    (b"hello world", r"first_text is bytes \(b'hello world'\).*decode it first"),
    (None, r"first_text must be a str or a list of str tokens, got NoneType None"),
    (3, r"first_text must be a str or a list of str tokens, got int 3"),
    (["hello", None], r"first_text\[1\] is NoneType None"),
], ids=["bytes", "None", "int", "None item"])
def test_encode_refuses_what_is_not_text(tokenizer, bad, message):
    with pytest.raises(TypeError, match=message):
        tokenizer.encode(bad)


def test_encode_batch_names_the_item_that_is_not_text(tokenizer):
    with pytest.raises(TypeError, match=r"first_texts\[1\] must be a str, got NoneType None"):
        tokenizer.encode_batch(["hello", None])
    with pytest.raises(TypeError, match=r"second_texts\[0\] is bytes"):
        tokenizer.encode_batch(["hello"], [b"world"])


def test_decode_of_an_id_outside_the_vocabulary_names_it(tokenizer):
    assert tokenizer.decode([4, 5]) == "hello world"
    with pytest.raises(ValueError, match=r"id 99999 is not in the vocab file .*\(ids 0 to 5\)"):
        tokenizer.decode([4, 99999])


def test_vocab_file_with_a_byte_order_mark_keeps_pad_at_zero(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\ufeff" + "\n".join(_VOCAB) + "\n", encoding="utf-8")
    assert load_vocab(str(path))["[PAD]"] == 0
    assert Tokenizer(str(path)).encode("hello world")[0] == [2, 4, 5, 3]


def test_vocab_file_with_blank_and_repeated_lines_warns_with_line_numbers(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n\n[CLS]\n[UNK]\nhello\n", encoding="utf-8")
    with pytest.warns(UserWarning, match=r"blank line\(s\) 3 .*repeated token\(s\) on line\(s\) 5 \(= line 2\)"):
        vocab = load_vocab(str(path))
    assert vocab == {"[PAD]": 0, "[UNK]": 4, "": 2, "[CLS]": 3, "hello": 4}  # 0.11.5's numbering


def test_clean_vocab_file_loads_without_warning(tmp_path, recwarn):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(_VOCAB) + "\n", encoding="utf-8")
    assert load_vocab(str(path))["world"] == 5
    assert not [w for w in recwarn if "vocab" in str(w.message)]


# ---------------------------------------------------------------- weight loading

from bert4keras.checkpoints import SafetensorsReader  # noqa: E402
from bert4keras.checkpoints.views import GoogleNameView  # noqa: E402


@pytest.fixture(scope="module")
def transformer_and_checkpoint(tmp_path_factory):
    transformer = build_transformer_model(**_CONFIG, return_keras_model=False)
    prefix = str(tmp_path_factory.mktemp("ckpt") / "bert.ckpt")
    transformer.save_weights_as_checkpoint(prefix)
    with open_checkpoint(prefix) as reader:
        tensors = {n: reader.get(n) for n in reader.names()}
    return transformer, tensors


def _spoiled(tmp_path, tensors, name, value) -> str:
    return write_tf_checkpoint(str(tmp_path / "spoiled.ckpt"), {**tensors, name: value})


def test_integer_weight_is_refused_naming_it(transformer_and_checkpoint, tmp_path):
    transformer, tensors = transformer_and_checkpoint
    name = "bert/encoder/layer_0/attention/self/query/kernel"
    prefix = _spoiled(tmp_path, tensors, name, tensors[name].astype("int32"))
    with pytest.raises(CheckpointError, match=f"weight {name} is stored as int32, not floating point"):
        transformer.load_weights_from_checkpoint(prefix)


def test_integer_safetensors_weight_is_refused_naming_it(tmp_path):
    from safetensors.numpy import save_file

    save_file({"w": np.ones((2, 2), "int32")}, str(tmp_path / "m.safetensors"))
    view = GoogleNameView(SafetensorsReader(str(tmp_path / "m.safetensors")))
    with pytest.raises(CheckpointError, match="weight w is stored as int32"):
        view.get("w")


def test_nan_weight_is_refused_unless_allowed(transformer_and_checkpoint, tmp_path):
    transformer, tensors = transformer_and_checkpoint
    name = "bert/embeddings/LayerNorm/gamma"
    spoiled = tensors[name].copy()
    spoiled[3] = np.nan
    prefix = _spoiled(tmp_path, tensors, name, spoiled)
    with pytest.raises(CheckpointError, match=rf"weight {name} holds 1 NaN/inf value\(s\) of 8 \(first nan at \(3,\)\); build the model with allow_nonfinite_weights=True"):
        transformer.load_weights_from_checkpoint(prefix)
    transformer = build_transformer_model(**_CONFIG, checkpoint_path=prefix, allow_nonfinite_weights=True,
                                          return_keras_model=False)
    index = transformer.variable_mapping()["Embedding-Norm"].index(name)
    gamma = transformer.layers["Embedding-Norm"].trainable_weights[index]
    assert np.isnan(keras.ops.convert_to_numpy(gamma)[3])


# ---------------------------------------------------------------- datasets, batch by batch


class _Batches(keras.utils.PyDataset):
    """A PyDataset over a fixed list of batches."""

    def __init__(self, batches, **kwargs):
        super().__init__(**kwargs)
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]


def _labelled(x) -> tuple:
    return x, np.zeros((len(x[0]), x[0].shape[1], 8), "float32")


_SOURCES = {
    "generator": lambda batches: (b for b in batches),
    "PyDataset": lambda batches: _Batches(batches),
    "PyDataset, 2 threads": lambda batches: _Batches(batches, workers=2),
}


@pytest.mark.parametrize("source", list(_SOURCES))
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_datasets_are_checked_batch_by_batch(bert, source, method):
    bad = _good()
    bad[0][1, 3] = 50
    batches = [_labelled(_good()), _labelled(bad)]
    if method == "predict":
        batches = [(x,) for x, _ in batches]
    run = getattr(bert, method)
    with pytest.raises(ValueError, match=r"batch 1: model .* holds token id 50 at \(1, 3\), outside the vocabulary \[0, 50\)"):
        run(_SOURCES[source](batches), verbose=0)
    assert np.isfinite(bert.predict_on_batch(_good())).all()  # the model still works
    assert len(bert.get_weights()) == len(bert.weights)
    bert.fit(_Batches([_labelled(_good())]), verbose=0)


def test_a_rejected_batch_leaves_trained_weights_and_a_usable_model(tmp_path):
    """The weights are those of a finished step (Keras may read a batch ahead, so the last
    good step may or may not have run), never missing or half-updated; training goes on.
    Plain SGD, so that "one more step on the good batch" can be computed from the weights."""
    model, reference = build_transformer_model(**_CONFIG), build_transformer_model(**_CONFIG)
    for m in (model, reference):
        m.compile(loss="mse", optimizer="sgd")

    def after_one_step(weights):
        reference.set_weights(weights)
        reference.fit((b for b in [good]), verbose=0)
        return reference.get_weights()

    def is_a_finished_step(weights, before) -> bool:
        return any(all(np.array_equal(a, b) for a, b in zip(weights, expected))
                   for expected in (before, after_one_step(before)))

    start = model.get_weights()
    good, bad = _labelled(_good()), _labelled(_good())
    bad[0][0][0, 0] = 99
    with pytest.raises(ValueError, match="batch 1: "):
        model.fit((b for b in [good, bad]), verbose=0)
    after = model.get_weights()
    assert is_a_finished_step(after, start)
    with pytest.raises(ValueError, match="batch 0: "):
        model.fit(_Batches([bad, good]), verbose=0)
    assert is_a_finished_step(model.get_weights(), after)
    model.save(str(tmp_path / "m.keras"))
    assert model.fit(_Batches([good]), verbose=0).history["loss"][0] > 0


def test_good_pydataset_trains_for_several_epochs(bert):
    history = bert.fit(_Batches([_labelled(_good()), _labelled(_good())]), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert bert.predict(_Batches([(_good(),)] * 3), verbose=0).shape == (6, 6, 8)


def test_validation_data_given_as_a_dataset_is_checked(bert):
    bad = _good()
    bad[1][0, 0] = 2
    with pytest.raises(ValueError, match=r"batch 0: .*'Input-Segment' holds segment id 2 at \(0, 0\)"):
        bert.fit(_Batches([_labelled(_good())]), validation_data=_Batches([_labelled(bad)]), verbose=0)


def test_tf_dataset_is_checked_batch_by_batch(bert):
    tf = pytest.importorskip("tensorflow")
    (tokens, segments), y = _labelled(_good(4))
    tokens[2, 1] = -1
    dataset = tf.data.Dataset.from_tensor_slices(((tokens, segments), y)).batch(2)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"batch 1: .*holds token id -1 at \(0, 1\)"):
        bert.fit(dataset, verbose=0)
    bert.fit(dataset.take(1), epochs=2, verbose=0)


# ---------------------------------------------------------------- configs and saved models


@pytest.mark.parametrize("field, value, expected", [
    ("hidden_size", "8", r"field 'hidden_size' is '8' \(str\); expected int"),
    ("num_hidden_layers", 1.0, r"field 'num_hidden_layers' is 1.0 \(float\); expected int"),
    ("type_vocab_size", "2", r"field 'type_vocab_size' is '2' \(str\); expected int"),
    ("hidden_dropout_prob", "0.1", r"field 'hidden_dropout_prob' is '0.1' \(str\); expected float"),
    ("layer_norm_eps", [1e-12], r"field 'layer_norm_eps' is \[1e-12\] \(list\); expected float"),
    ("custom_position_ids", "yes", r"field 'custom_position_ids' is 'yes' \(str\); expected bool"),
    ("vocab_size", True, r"field 'vocab_size' is True \(bool\); expected int"),
], ids=["hidden_size", "num_hidden_layers", "type_vocab_size", "hidden_dropout_prob", "layer_norm_eps",
        "custom_position_ids", "vocab_size"])
def test_config_value_of_the_wrong_type_is_named(tmp_path, field, value, expected):
    import json

    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps({**_CONFIG, field: value}))
    with pytest.raises(TypeError, match=rf"config {path}: {expected}"):
        build_transformer_model(str(path))


def test_config_of_another_family_with_a_wrong_type_is_named():
    with pytest.raises(TypeError, match=r"field 'n_embd' is '8' \(str\); expected int"):
        build_transformer_model(model="gpt2", vocab_size=50, n_embd="8", n_layer=1, n_head=2)
    with pytest.raises(TypeError, match=r"field 'version' is \['t5.1.1'\] \(list\); expected str"):
        build_transformer_model(model="t5", **_CONFIG, version=["t5.1.1"])


def test_config_with_ints_for_floats_and_numpy_ints_builds():
    model = build_transformer_model(**{**_CONFIG, "vocab_size": np.int64(50)}, dropout_rate=0,
                                    layer_norm_eps=1)
    assert model.predict_on_batch(_good()).shape == (2, 6, 8)


def _run_python(code: str) -> "subprocess.CompletedProcess":
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_saved_model_loads_after_importing_only_bert4keras_layers(tmp_path):
    from bert4keras.optimizers import AdaFactor

    model = build_transformer_model(**_CONFIG)
    model.compile(loss="mse", optimizer=AdaFactor(learning_rate=1e-3))
    model.train_on_batch(_good(), np.zeros((2, 6, 8)))
    path = str(tmp_path / "m.keras")
    model.save(path)
    expected = model.predict_on_batch(_good())
    np.save(tmp_path / "x.npy", np.stack(_good()))
    np.save(tmp_path / "y.npy", expected)
    done = _run_python(
        "import numpy as np, bert4keras.layers, keras, sys\n"
        f"m = keras.models.load_model({path!r})\n"
        "assert not [k for k in sys.modules if k == 'bert4keras.tokenizers'], 'imported more than asked'\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"np.testing.assert_allclose(m.predict_on_batch(list(x)), np.load({str(tmp_path / 'y.npy')!r}), atol=1e-5)\n"
        "print(type(m).__name__, type(m.optimizer).__name__)\n")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["TransformerModel", "AdaFactor"]


def test_saved_model_loaded_with_plain_keras_says_which_class_is_missing(bert, tmp_path):
    path = str(tmp_path / "m.keras")
    bert.save(path)
    done = _run_python(f"import keras\nkeras.models.load_model({path!r})\n")
    assert done.returncode != 0
    assert "Could not locate class 'TransformerModel'" in done.stderr
    assert "'module': 'bert4keras.models.keras_model'" in done.stderr


def test_memm_accuracy_as_a_compile_metric_says_why_and_the_model_survives():
    from bert4keras.layers import MaximumEntropyMarkovModel
    from bert4keras.models.keras_model import TransformerModel

    tokens = keras.Input((None,), dtype="int32")
    memm = MaximumEntropyMarkovModel()
    model = TransformerModel(tokens, memm(keras.layers.Dense(4)(keras.layers.Embedding(20, 8)(tokens))))
    model.compile(loss=memm.sparse_loss, optimizer="adam", metrics=[memm.sparse_accuracy])
    x, y = np.arange(20).reshape(4, 5) % 19 + 1, np.arange(20).reshape(4, 5) % 4
    if keras.backend.backend() != "jax":
        assert np.isfinite(model.fit(x, y, verbose=0).history["sparse_accuracy"][0])
        return
    before = model.get_weights()
    with pytest.raises(RuntimeError, match=r"trans is not readable here; on JAX, Keras computes compile\(\) metrics"):
        model.fit(x, y, verbose=0)
    for a, b in zip(model.get_weights(), before):  # the model keeps its weights
        np.testing.assert_array_equal(a, b)
    assert 0 <= float(memm.sparse_accuracy(keras.ops.convert_to_tensor(y), model.predict(x, verbose=0))) <= 1
