"""The ``keras`` that ``bert4keras.backend`` exports: Keras 3, plus the Keras 2 spellings 0.11.5 scripts call.

Every attribute, submodule and class of Keras 3 is reachable through it unchanged,
except ``Model`` / ``models.Model``, ``Sequential`` / ``models.Sequential``,
``models.load_model`` and the optimizer classes of ``optimizers``: those are thin
subclasses (or a wrapper) that add ``fit_generator``, ``save_weights`` to any file
name, ``add_metric``, ``lr=`` and so on. ``isinstance`` against them accepts any
Keras 3 model or optimizer of the same kind. A plain ``import keras`` is untouched.
The table of spellings is docs/keras2.md.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import tempfile
import types
import uuid
import warnings
import weakref
import zipfile
from dataclasses import dataclass, field
from typing import Any, Iterator

import h5py
import keras

from bert4keras.input_checks import InputChecks


class _KerasAlias(type):
    """Metaclass of the compat classes: ``isinstance(x, compat.Model)`` is ``isinstance(x, keras.Model)``,
    so checks written against ``keras.Model`` keep accepting plain Keras 3 models."""

    def __instancecheck__(cls, instance) -> bool:
        wrapped = cls.__dict__.get("_keras2_alias_of")
        return isinstance(instance, wrapped) if wrapped else super().__instancecheck__(instance)

    def __subclasscheck__(cls, subclass) -> bool:
        wrapped = cls.__dict__.get("_keras2_alias_of")
        return issubclass(subclass, wrapped) if wrapped else super().__subclasscheck__(subclass)


# --------------------------------------------------------------------------- files


def _sniff(path: str) -> str:
    """What a model/weights file holds, judged by its bytes: ``'keras'`` (a ``.keras`` zip),
    ``'weights.h5'`` (Keras 3 HDF5 weights) or ``'h5'`` (Keras 2 HDF5 with ``layer_names``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
        if "config.json" in names or "model.weights.h5" in names:
            return "keras"
        raise ValueError(f"{path!r} is a zip archive but not a Keras model (.keras) file: "
                         f"it holds neither config.json nor model.weights.h5")
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            if "layer_names" in f.attrs or "model_weights" in f:
                return "h5"
            if "vars" in f or "layers" in f:
                return "weights.h5"
        raise ValueError(f"{path!r} is an HDF5 file but neither Keras 3 weights (groups 'layers'/'vars') "
                         f"nor Keras 2 weights (a 'layer_names' attribute)")
    raise ValueError(f"{path!r} is neither a Keras weights file (HDF5) nor a Keras model file (.keras zip)")


def _kind_by_name(path: str) -> str | None:
    """The format Keras 3 would assume from the file name alone."""
    for suffix, kind in ((".weights.h5", "weights.h5"), (".keras", "keras"), (".h5", "h5"), (".hdf5", "h5")):
        if path.endswith(suffix):
            return kind
    return None


@contextlib.contextmanager
def _named_for(path: str, kind: str) -> Iterator[str]:
    """``path`` under a name from which Keras 3 (which picks its reader by suffix) assumes ``kind``:
    the path itself if its name already says so, else a symlink (or a copy) in a temporary folder."""
    if _kind_by_name(path) == kind:
        yield path
        return
    folder = tempfile.mkdtemp(prefix="bert4keras-")
    alias = os.path.join(folder, "file." + kind)
    try:
        try:
            os.symlink(os.path.abspath(path), alias)
        except OSError:  # no symlink privilege (Windows)
            shutil.copyfile(path, alias)
        yield alias
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _atomic_write(path: str, suffix: str) -> Iterator[str]:
    """A temporary name (ending in ``suffix``) in ``path``'s folder to write to; on success it
    replaces ``path`` in one ``os.replace``, on failure it is removed and ``path`` is left as it was."""
    folder, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{base}.{uuid.uuid4().hex}.tmp{suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_model(filepath, custom_objects=None, compile: bool = True, safe_mode: bool = True):
    """``keras.models.load_model`` for any file name: a ``.keras`` zip or a Keras 2 HDF5 model, by content."""
    path = os.fspath(filepath)
    if os.path.isdir(path):  # a checkpoint folder: Keras 3's own rules
        return keras.models.load_model(path, custom_objects=custom_objects, compile=compile,
                                       safe_mode=safe_mode)
    kind = _sniff(path)
    if kind == "weights.h5":
        raise ValueError(f"{path!r} holds weights only (save_weights); build the model and call load_weights")
    with _named_for(path, kind) as readable:
        return keras.models.load_model(readable, custom_objects=custom_objects, compile=compile,
                                       safe_mode=safe_mode)


# --------------------------------------------------------------------------- add_metric


@dataclass
class _Metrics:
    """The tensors ``add_metric`` registered on one model, the graph computing them and their trackers."""

    names: list[str] = field(default_factory=list)
    tensors: list[Any] = field(default_factory=list)
    trackers: list[keras.metrics.Mean] = field(default_factory=list)
    graph: keras.Model | None = None
    tapping: bool = False


# Kept beside the model, not on it: an attribute would be saved with the model's weights.
_METRICS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _warn_readers(workers: int, use_multiprocessing: bool) -> None:
    if workers != 1 or use_multiprocessing:
        warnings.warn("workers/use_multiprocessing have no effect on a Python generator under Keras 3 "
                      "(it is read in the training loop); a keras.utils.PyDataset takes them instead",
                      stacklevel=3)


def _as_generator(data):
    """Keras 3 reads Python generators and PyDatasets; Keras 2 also took any iterator."""
    if isinstance(data, (types.GeneratorType, keras.utils.PyDataset)) or not hasattr(data, "__next__"):
        return data
    return (batch for batch in data)


def _inputs_only(generator):
    """Keras 2's predict_generator: a batch is ``x`` or a tuple ``(x, y[, w])`` of which ``x`` is used."""
    for batch in generator:
        yield (batch[0],) if isinstance(batch, tuple) else (batch,)


class Keras2ModelMixin:
    """Keras 2 model methods on a Keras 3 model: the ``*_generator`` trio, ``save_weights``/``load_weights``/
    ``save`` to any file name (format by content, atomic writes) and ``add_metric`` of a graph tensor."""

    def fit_generator(self, generator, steps_per_epoch=None, epochs=1, verbose=1, callbacks=None,
                      validation_data=None, validation_steps=None, validation_freq=1, class_weight=None,
                      max_queue_size=10, workers=1, use_multiprocessing=False, shuffle=True,
                      initial_epoch=0):
        """Keras 2's ``fit_generator``: ``fit`` on the generator with the same arguments."""
        _warn_readers(workers, use_multiprocessing)
        generator, validation_data = _as_generator(generator), _as_generator(validation_data)
        return self.fit(generator, steps_per_epoch=steps_per_epoch, epochs=epochs, verbose=verbose,
                        callbacks=callbacks, validation_data=validation_data,
                        validation_steps=validation_steps, validation_freq=validation_freq,
                        class_weight=class_weight, initial_epoch=initial_epoch,
                        shuffle=shuffle and isinstance(generator, keras.utils.PyDataset))  # as in Keras 2

    def evaluate_generator(self, generator, steps=None, callbacks=None, max_queue_size=10, workers=1,
                           use_multiprocessing=False, verbose=0):
        """Keras 2's ``evaluate_generator``: ``evaluate`` on the generator."""
        _warn_readers(workers, use_multiprocessing)
        return self.evaluate(_as_generator(generator), steps=steps, callbacks=callbacks, verbose=verbose)

    def predict_generator(self, generator, steps=None, callbacks=None, max_queue_size=10, workers=1,
                          use_multiprocessing=False, verbose=0):
        """Keras 2's ``predict_generator``: ``predict`` on the generator's inputs (a list is one ``x``)."""
        _warn_readers(workers, use_multiprocessing)
        if not isinstance(generator, keras.utils.PyDataset):
            generator = _inputs_only(generator)
        return self.predict(generator, steps=steps, callbacks=callbacks, verbose=verbose)

    def save_weights(self, filepath, overwrite: bool = True, max_shard_size=None) -> None:
        """Keras 3 HDF5 weights written to ``filepath`` whatever its name, atomically
        (a temporary file in the same folder, then ``os.replace``)."""
        path = os.fspath(filepath)
        if max_shard_size is not None:  # sharded .weights.json: Keras 3's own rules
            return super().save_weights(path, overwrite=overwrite, max_shard_size=max_shard_size)
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"{path!r} exists and overwrite=False")
        with _atomic_write(path, ".weights.h5") as tmp:
            super().save_weights(tmp)

    def load_weights(self, filepath, skip_mismatch: bool = False, **kwargs) -> None:
        """Load weights from ``filepath`` whatever its name: Keras 3 ``.weights.h5`` layout, Keras 2
        HDF5 (``layer_names``) or a ``.keras`` zip, recognised by content."""
        path = os.fspath(filepath)
        if path.endswith(".weights.json") or os.path.isdir(path):  # shards, folders: Keras 3's rules
            return super().load_weights(path, skip_mismatch=skip_mismatch, **kwargs)
        with _named_for(path, _sniff(path)) as readable:
            return super().load_weights(readable, skip_mismatch=skip_mismatch, **kwargs)

    def save(self, filepath, overwrite: bool = True, **kwargs) -> None:
        """``save`` to any file name: a ``.keras`` zip unless the name ends in ``.h5``/``.hdf5``; atomic."""
        path = os.fspath(filepath)
        suffix = ".h5" if path.endswith((".h5", ".hdf5")) else ".keras"
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"{path!r} exists and overwrite=False")
        with _atomic_write(path, suffix) as tmp:
            super().save(tmp, **kwargs)

    def add_metric(self, value, name: str | None = None, aggregation: str | None = None) -> None:
        """Report ``value``, a tensor of this model's graph, as metric ``name`` (its mean over the
        epoch) in ``fit``/``evaluate``; it is computed in the same forward pass as the loss."""
        if aggregation not in (None, "mean"):
            raise ValueError(f"add_metric: aggregation must be 'mean' (Keras 2's only choice for a "
                             f"tensor), got {aggregation!r}")
        if isinstance(self, keras.Sequential) or type(self).call is not Keras2ModelMixin.call:
            raise TypeError(f"add_metric needs a functional model (Model(inputs, outputs)); "
                            f"{type(self).__name__} is a Sequential or defines its own call()")
        if not isinstance(value, keras.KerasTensor):
            raise TypeError(f"add_metric takes a symbolic tensor of model {self.name!r}'s graph "
                            f"(built from its inputs), got {type(value).__name__}")
        state = _METRICS.get(self) or _Metrics()
        name = name or value.name
        taken = {m.name for m in self.metrics} | {"loss"}
        if name in taken:
            raise ValueError(f"add_metric: model {self.name!r} already reports a metric named {name!r}")
        try:
            graph = keras.Model(self.input, (self.output, tuple(state.tensors + [value])))
        except ValueError as error:
            raise ValueError(f"add_metric({name!r}): the tensor is not computed from the inputs of "
                             f"model {self.name!r}") from error
        state.names.append(name)
        state.tensors.append(value)
        state.trackers.append(keras.metrics.Mean(name=name))
        state.graph = graph
        _METRICS[self] = state
        self.train_function = self.test_function = None  # rebuild the steps with the new output

    @property
    def metrics(self):
        state = _METRICS.get(self)
        return super().metrics + (state.trackers if state else [])

    def call(self, inputs, training=None, mask=None, **kwargs):
        state = _METRICS.get(self)
        if state is None or not state.tapping:
            return super().call(inputs, training=training, mask=mask, **kwargs)
        return state.graph.call(inputs, training=training, mask=mask, **kwargs)

    def train_step(self, *args, **kwargs):
        with self._tapping():
            return super().train_step(*args, **kwargs)

    def test_step(self, *args, **kwargs):
        with self._tapping():
            return super().test_step(*args, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        state = _METRICS.get(self)
        if state is not None and state.tapping:
            y_pred = y_pred[0]
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        state = _METRICS.get(self)
        if state is not None and state.tapping:
            y_pred, values = y_pred
            for tracker, value in zip(state.trackers, values):
                tracker.update_state(value)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    @contextlib.contextmanager
    def _tapping(self):
        """While a train/test step runs, ``call`` also returns the ``add_metric`` tensors."""
        state = _METRICS.get(self)
        if state is None:
            yield
            return
        state.tapping = True
        try:
            yield
        finally:
            state.tapping = False


@keras.saving.register_keras_serializable(package="bert4keras.keras2")
class Functional(InputChecks, Keras2ModelMixin, keras.Model):
    """What ``Model(inputs, outputs)`` builds: a functional Keras 3 model with the Keras 2 methods,
    whose entry points check host-side inputs (ids, lengths, shapes) before a compiled step."""


def _functional_arguments(args: tuple, kwargs: dict) -> tuple[tuple, dict, bool]:
    """Keras 2's ``input=``/``output=`` as ``inputs=``/``outputs=``, and whether this is a functional call."""
    for old, new in (("input", "inputs"), ("output", "outputs")):
        if old in kwargs:
            if new in kwargs:
                raise TypeError(f"Model: pass {new}= or {old}=, not both")
            kwargs[new] = kwargs.pop(old)
    functional = (len(args) == 2 or (len(args) == 1 and "outputs" in kwargs)
                  or ("inputs" in kwargs and "outputs" in kwargs))
    return args, kwargs, functional


@keras.saving.register_keras_serializable(package="bert4keras.keras2")
class Model(Keras2ModelMixin, keras.Model, metaclass=_KerasAlias):
    """``keras.Model`` with the Keras 2 methods; ``Model(inputs, outputs)`` returns a :class:`Functional`."""

    _keras2_alias_of = keras.Model

    def __new__(cls, *args, **kwargs):
        if cls is Model:
            args, kwargs, functional = _functional_arguments(args, kwargs)
            if functional:
                return Functional(*args, **kwargs)
        return super().__new__(cls, *args, **kwargs)


@keras.saving.register_keras_serializable(package="bert4keras.keras2")
class Sequential(Keras2ModelMixin, keras.Sequential, metaclass=_KerasAlias):
    """``keras.Sequential`` with the Keras 2 methods."""

    _keras2_alias_of = keras.Sequential


# --------------------------------------------------------------------------- optimizers


class LearningRateAlias:
    """Keras 2's ``optimizer.lr``, read/write: the learning-rate variable, so
    ``K.set_value(optimizer.lr, x)`` changes the rate used."""

    @property
    def lr(self):
        return self.learning_rate

    @lr.setter
    def lr(self, value) -> None:
        self.learning_rate = value


class Keras2OptimizerMixin(LearningRateAlias):
    """Keras 2 optimizer spellings: ``lr=`` for ``learning_rate=``, and ``optimizer.lr``."""

    def __init__(self, *args, lr=None, **kwargs):
        if lr is not None:
            if args or "learning_rate" in kwargs:
                raise TypeError(f"{type(self).__name__}: pass lr= or learning_rate=, not both")
            kwargs["learning_rate"] = lr
        super().__init__(*args, **kwargs)


def _optimizer_classes() -> dict[str, type]:
    """A Keras-2 spelled subclass of every Keras 3 optimizer taking ``learning_rate``."""
    found = {}
    for name in dir(keras.optimizers):
        base = getattr(keras.optimizers, name)
        if (isinstance(base, type) and issubclass(base, keras.optimizers.Optimizer)
                and base is not keras.optimizers.Optimizer
                and "learning_rate" in inspect.signature(base).parameters):
            namespace = {"_keras2_alias_of": base, "__module__": __name__, "__qualname__": name,
                         "__doc__": f"``keras.optimizers.{name}`` taking ``lr=``."}
            cls = _KerasAlias(name, (Keras2OptimizerMixin, base), namespace)
            found[name] = keras.saving.register_keras_serializable(package="bert4keras.keras2")(cls)
    return found


OPTIMIZERS = _optimizer_classes()


# --------------------------------------------------------------------------- the proxy module


class _Proxy(types.ModuleType):
    """A module reading through to ``wrapped`` for every name it does not define itself."""

    def __init__(self, name: str, wrapped: types.ModuleType, overrides: dict[str, Any]):
        super().__init__(name, wrapped.__doc__)
        self.__dict__.update(overrides)
        self.__dict__["__wrapped__"] = wrapped

    def __getattr__(self, name: str):
        return getattr(self.__dict__["__wrapped__"], name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self.__dict__["__wrapped__"])) | set(self.__dict__))

    def __repr__(self) -> str:
        return f"<bert4keras Keras 2 spellings over {self.__dict__['__wrapped__']!r}>"


models = _Proxy("keras.models", keras.models,
                {"Model": Model, "Sequential": Sequential, "load_model": load_model})
optimizers = _Proxy("keras.optimizers", keras.optimizers, OPTIMIZERS)
# What ``from bert4keras.backend import keras`` gives; a plain ``import keras`` stays Keras 3 as is.
keras2 = _Proxy("keras", keras, {"Model": Model, "Sequential": Sequential, "models": models,
                                 "optimizers": optimizers})
