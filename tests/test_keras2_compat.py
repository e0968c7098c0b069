"""The Keras 2 spellings of ``from bert4keras.backend import keras``: a 0.11.5-style script end to end."""

import os
import zipfile

import h5py
import keras as plain_keras
import numpy as np
import pytest

from bert4keras.backend import K, keras
from bert4keras.models import build_transformer_model

TINY = dict(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=32, max_position=12, with_pool=True)


def classifier(seed: int = 0):
    """What 0.11.5 examples build: ``keras.models.Model(bert.input, head(bert.output))``."""
    plain_keras.utils.set_random_seed(seed)
    bert = build_transformer_model(**TINY)
    output = keras.layers.Dense(3, activation="softmax", name="Probas")(bert.output)
    return keras.models.Model(bert.input, output), output


def batches(seed: int = 0, size: int = 4):
    rng = np.random.default_rng(seed)
    while True:
        tokens = rng.integers(1, TINY["vocab_size"], (size, 8))
        yield [tokens, np.zeros_like(tokens)], rng.integers(0, 3, (size, 1))


def test_plain_keras_is_untouched():
    assert not hasattr(plain_keras.Model, "fit_generator")
    i = plain_keras.Input((3,))
    plain = plain_keras.Model(i, plain_keras.layers.Dense(2)(i))
    assert not hasattr(plain, "fit_generator") and not hasattr(plain_keras.optimizers.Adam(), "lr")
    # every name of Keras 3 reads through; the compat classes accept plain Keras 3 objects
    assert keras.layers is plain_keras.layers and keras.ops is plain_keras.ops
    assert keras.__version__ == plain_keras.__version__
    assert keras.utils.PyDataset is plain_keras.utils.PyDataset
    assert set(dir(plain_keras)) <= set(dir(keras))
    assert isinstance(plain, keras.Model) and isinstance(plain, keras.models.Model)
    assert isinstance(plain_keras.optimizers.Adam(), keras.optimizers.Adam)
    assert issubclass(plain_keras.Model, keras.Model)
    compat = keras.Model(i, plain_keras.layers.Dense(2)(i))
    assert isinstance(compat, plain_keras.Model) and hasattr(compat, "fit_generator")


def test_script_pattern_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, output = classifier()
    model.add_metric(K.mean(K.max(output, axis=-1)), name="confidence")
    model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.Adam(lr=1e-3),
                  metrics=["accuracy"])
    assert K.get_value(model.optimizer.lr) == pytest.approx(1e-3)

    history = model.fit_generator(batches(), steps_per_epoch=3, epochs=2, verbose=0)
    assert len(history.history["confidence"]) == 2 and len(history.history["loss"]) == 2
    assert all(1 / 3 <= c <= 1 for c in history.history["confidence"])

    # the metric is the tensor's value: evaluate's confidence is the mean top probability
    x, y = next(batches(seed=1))
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    probas = model.predict(x, verbose=0)
    assert logs["confidence"] == pytest.approx(float(np.mean(probas.max(-1))), rel=1e-5)
    loss, accuracy, confidence = model.evaluate_generator(iter([(x, y)]), steps=1)
    assert confidence == pytest.approx(logs["confidence"], rel=1e-5)

    model.save_weights("best_model.weights")
    fresh, _ = classifier(seed=1)
    assert not np.allclose(fresh.predict(x, verbose=0), probas)
    fresh.load_weights("best_model.weights")
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), probas)
    np.testing.assert_array_equal(fresh.predict_generator(iter([x, (x, y)]), steps=2),
                                  np.concatenate([probas, probas]))


def test_set_value_on_lr_changes_the_rate_used():
    i = keras.layers.Input((3,))
    model = keras.models.Model(i, keras.layers.Dense(1)(i))
    model.compile(loss="mse", optimizer=keras.optimizers.SGD(lr=0.1))
    data = ((np.ones((2, 3)), np.full((2, 1), 5.0)) for _ in range(100))

    class FreezeFromThirdBatch(keras.callbacks.Callback):  # as a 0.11.5 callback would
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2:
                K.set_value(self.model.optimizer.lr, 0.0)
                self.frozen = [w.copy() for w in self.model.get_weights()]

    callback = FreezeFromThirdBatch()
    start = [w.copy() for w in model.get_weights()]
    model.fit_generator(data, steps_per_epoch=4, epochs=1, verbose=0, callbacks=[callback])
    assert not all(np.array_equal(a, b) for a, b in zip(start, callback.frozen))  # lr=0.1 moved them
    assert all(np.array_equal(a, b) for a, b in zip(callback.frozen, model.get_weights()))
    assert K.get_value(model.optimizer.lr) == 0.0
    model.optimizer.lr = 0.25
    assert float(model.optimizer.learning_rate) == pytest.approx(0.25)
    model.fit_generator(data, steps_per_epoch=1, verbose=0)
    assert not all(np.array_equal(a, b) for a, b in zip(callback.frozen, model.get_weights()))


def test_optimizer_lr_spelling():
    adam = keras.optimizers.Adam(lr=0.01, beta_1=0.8)
    assert float(adam.learning_rate) == pytest.approx(0.01) and adam.beta_1 == 0.8
    assert isinstance(adam, plain_keras.optimizers.Adam)
    again = keras.optimizers.Adam.from_config(adam.get_config())
    assert float(again.lr) == pytest.approx(0.01)
    with pytest.raises(TypeError, match="lr= or learning_rate="):
        keras.optimizers.Adam(lr=0.01, learning_rate=0.02)
    for name in ("SGD", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "AdamW"):
        assert float(getattr(keras.optimizers, name)(lr=0.3).lr) == pytest.approx(0.3)


def test_transformer_model_has_the_keras2_methods(tmp_path):
    bert = build_transformer_model(**TINY)
    x, _ = next(batches())
    bert.add_metric(K.mean(K.abs(bert.output)), name="pooled")
    bert.compile(loss="mse", optimizer=keras.optimizers.SGD(lr=0.01))
    targets = np.zeros((4, TINY["hidden_size"]))
    history = bert.fit_generator(((x, targets) for _ in range(2)), steps_per_epoch=2, verbose=0)
    assert 0 < history.history["pooled"][0] <= 1  # the mean |tanh| of the pooled output
    bert.save_weights(tmp_path / "bert.weights")
    other = build_transformer_model(**TINY)
    other.load_weights(tmp_path / "bert.weights")
    expected = bert.predict(x, verbose=0)
    np.testing.assert_array_equal(other.predict_generator(iter([x]), steps=1), expected)


def test_model_constructor_spellings():
    i = keras.layers.Input((3,))
    o = keras.layers.Dense(2)(i)
    spellings = (keras.models.Model(i, o), keras.Model(inputs=i, outputs=o),
                 keras.models.Model(input=i, output=o))
    for model in spellings:
        assert hasattr(model, "fit_generator") and model.output is o
    with pytest.raises(TypeError, match="not both"):
        keras.models.Model(i, input=i, output=o, outputs=o)

    class Net(keras.models.Model):  # subclassing keeps working, with the Keras 2 methods
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net.compile(loss="mse", optimizer=keras.optimizers.SGD(lr=0.01))
    data = ((np.ones((2, 3)), np.ones((2, 1))) for _ in range(3))
    assert len(net.fit_generator(data, steps_per_epoch=3, verbose=0).history["loss"]) == 1
    with pytest.raises(TypeError, match="functional model"):
        net.add_metric(o, name="x")

    seq = keras.models.Sequential([keras.layers.Input((3,)), keras.layers.Dense(1)])
    assert hasattr(seq, "fit_generator") and isinstance(seq, plain_keras.Sequential)
    assert seq.predict_generator(iter([np.ones((2, 3))]), steps=1).shape == (2, 1)
    with pytest.raises(TypeError, match="functional model"):
        seq.add_metric(o, name="x")


def test_add_metric_rejects_what_keras2_rejected():
    model, output = classifier()
    stranger = keras.layers.Input((3,))
    with pytest.raises(ValueError, match="not computed from the inputs"):
        model.add_metric(K.mean(stranger), name="stranger")
    with pytest.raises(TypeError, match="symbolic tensor"):
        model.add_metric(np.float32(1.0), name="constant")
    model.compile(loss="sparse_categorical_crossentropy")
    model.evaluate_generator(batches(), steps=1)  # a refused add_metric changed nothing
    model.add_metric(K.mean(output), name="m")
    with pytest.raises(ValueError, match="already reports a metric named 'm'"):
        model.add_metric(K.max(output), name="m")


def test_save_weights_is_atomic(tmp_path, monkeypatch):
    model, _ = classifier()
    path = tmp_path / "best_model.weights"
    model.save_weights(path)
    good = path.read_bytes()

    def broken_write(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"\x89HDF half written")
        raise OSError("disk full")

    monkeypatch.setattr(plain_keras.Model, "save_weights", broken_write)
    with pytest.raises(OSError, match="disk full"):
        model.save_weights(path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["best_model.weights"]  # no temporary file left behind


def test_load_weights_recognises_formats_by_content(tmp_path):
    model, _ = classifier()
    x, _ = next(batches())
    expected = model.predict(x, verbose=0)

    model.save(tmp_path / "legacy.h5")  # Keras 2 HDF5 layout, then any name
    os.replace(tmp_path / "legacy.h5", tmp_path / "keras2.weights")
    with h5py.File(tmp_path / "keras2.weights") as f:
        assert "layer_names" in f["model_weights"].attrs
    model.save(tmp_path / "test.model")  # a .keras zip under 0.11.5's file name
    assert zipfile.is_zipfile(tmp_path / "test.model")

    (tmp_path / "misnamed.weights.h5").write_bytes((tmp_path / "keras2.weights").read_bytes())
    for name in ("keras2.weights", "test.model", "misnamed.weights.h5"):
        fresh, _ = classifier(seed=1)
        fresh.load_weights(tmp_path / name)
        np.testing.assert_array_equal(fresh.predict(x, verbose=0), expected)
    reloaded = keras.models.load_model(tmp_path / "test.model")
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), expected)
    assert hasattr(reloaded, "fit_generator")


@pytest.mark.parametrize("content, message", [
    (b"certainly not weights", "neither a Keras weights file"),
    (None, "zip archive but not a Keras model"),
    ("h5", "HDF5 file but neither"),
])
def test_unreadable_file_gives_a_clear_error(tmp_path, content, message):
    path = tmp_path / "best_model.weights"
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "hello")
    elif content == "h5":
        with h5py.File(path, "w") as f:
            f["something"] = np.zeros(3)
    else:
        path.write_bytes(content)
    model, _ = classifier()
    with pytest.raises(ValueError, match=message) as error:
        model.load_weights(path)
    assert str(path) in str(error.value)
    with pytest.raises(ValueError, match=message):
        keras.models.load_model(path)
    with pytest.raises(FileNotFoundError, match="missing.weights"):
        model.load_weights(tmp_path / "missing.weights")
