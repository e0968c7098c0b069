"""Small utilities bert4keras scripts rely on: padding, data generators, text helpers."""

from __future__ import annotations

import builtins
import functools
import json
import os
import re
import types
import unicodedata
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from bert4keras._parallel import parallel_apply, parallel_apply_generator  # noqa: F401
from bert4keras.checkpoints.resize import orthogonally_resize  # noqa: F401
from bert4keras.generation import AutoRegressiveDecoder  # noqa: F401
from bert4keras.similarity import *  # noqa: F401,F403  (WMD / WRD text similarity)
from bert4keras.tokenizers import truncate_sequences  # noqa: F401
from bert4keras.viterbi import ViterbiDecoder  # noqa: F401


def to_array(*args):
    """Convert each argument to a numpy array (one argument -> one array)."""
    results = [np.array(a) for a in args]
    return results[0] if len(args) == 1 else results


def is_string(s) -> bool:
    return isinstance(s, str)


def strQ2B(ustring: str) -> str:
    """Full-width characters (incl. the ideographic space) to their half-width forms."""
    out = []
    for ch in ustring:
        code = ord(ch)
        if code == 0x3000:
            code = 0x20
        elif 0xFF01 <= code <= 0xFF5E:
            code -= 0xFEE0
        out.append(chr(code))
    return "".join(out)


def string_matching(s: str, keywords: Iterable[str]) -> bool:
    """True if any regex in ``keywords`` is found in ``s``."""
    return any(re.search(k, s) for k in keywords)


def convert_to_unicode(text, encoding: str = "utf-8", errors: str = "ignore") -> str:
    return text.decode(encoding, errors=errors) if isinstance(text, bytes) else text


def convert_to_str(text, encoding: str = "utf-8", errors: str = "ignore") -> str:
    return convert_to_unicode(text, encoding, errors)


def sequence_padding(inputs: Sequence, length=None, value=0, seq_dims: int = 1,
                     mode: str = "post") -> np.ndarray:
    """Pad (or cut) sequences to a common length along their first ``seq_dims`` axes.

    ``length`` defaults to the longest; ``mode`` is 'post' (pad at the end) or 'pre'.
    """
    if mode not in ("post", "pre"):
        raise ValueError(f'"mode" argument must be "post" or "pre", got {mode!r}')
    if not len(inputs):
        raise ValueError("sequence_padding: no sequences given")
    if length is None:
        length = np.max([np.shape(x)[:seq_dims] for x in inputs], axis=0)
    elif not hasattr(length, "__getitem__"):
        length = [length]
    cut = tuple(slice(None, length[i]) for i in range(seq_dims))
    outputs = []
    for x in inputs:
        x = np.asarray(x)[cut]
        pad_width = [(0, 0)] * x.ndim
        for i in range(seq_dims):
            missing = length[i] - x.shape[i]
            pad_width[i] = (0, missing) if mode == "post" else (missing, 0)
        outputs.append(np.pad(x, pad_width, "constant", constant_values=value))
    return np.array(outputs)


def text_segmentate(text: str, maxlen: int, seps: str = "\n", strips: str | None = None) -> list[str]:
    """Split ``text`` into pieces of at most ``maxlen`` characters, cutting at ``seps`` in order."""
    text = text.strip().strip(strips)
    if not seps or len(text) <= maxlen:
        return [text]
    pieces = text.split(seps[0])
    text, texts = "", []
    for i, piece in enumerate(pieces):
        if text and piece and len(text) + len(piece) > maxlen - 1:
            texts.extend(text_segmentate(text, maxlen, seps[1:], strips))
            text = ""
        text = text + piece if i + 1 == len(pieces) else text + piece + seps[0]
    if text:
        texts.extend(text_segmentate(text, maxlen, seps[1:], strips))
    return texts


def is_one_of(x, ys) -> bool:
    """``x in ys`` by identity (safe for arrays and tensors)."""
    return any(x is y for y in ys)


class DataGenerator:
    """Template for batch generators: subclass and implement ``__iter__(random)``.

    ``forfit()`` loops forever (pass ``steps_per_epoch=len(gen)`` to ``fit``);
    ``sample()`` yields ``(is_end, item)`` so ``__iter__`` knows when to flush.
    """

    def __init__(self, data, batch_size: int = 32, buffer_size: int | None = None):
        self.data = data
        self.batch_size = batch_size
        if hasattr(data, "__len__"):
            self.steps = -(-len(data) // batch_size)
        else:
            self.steps = None
        self.buffer_size = buffer_size or batch_size * 1000

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("this DataGenerator wraps data without a length")
        return self.steps

    def sample(self, random: bool = False) -> Iterator[tuple[bool, object]]:
        """Yield ``(is_last, item)``; ``random`` shuffles (a buffer for unsized data)."""
        if random and self.steps is not None:
            data = (self.data[i] for i in np.random.permutation(len(self.data)))
        elif random:
            data = self._buffered_shuffle()
        else:
            data = iter(self.data)
        try:
            current = next(data)
        except StopIteration:
            return
        for upcoming in data:
            yield False, current
            current = upcoming
        yield True, current

    def _buffered_shuffle(self):
        cache = []
        for d in self.data:
            cache.append(d)
            if len(cache) >= self.buffer_size:
                yield cache.pop(np.random.randint(len(cache)))
        while cache:
            yield cache.pop(np.random.randint(len(cache)))

    def __iter__(self, random: bool = False):
        raise NotImplementedError

    def forfit(self, random: bool = True):
        """Endless batches for ``model.fit``."""
        while True:
            yield from self.__iter__(random)

    def fortest(self, random: bool = False):
        """Endless batches of inputs only (for ``predict``)."""
        while True:
            for d in self.__iter__(random):
                yield d[0]

    def to_dataset(self, types, shapes, names=None, padded_batch: bool = False):
        """A ``tf.data.Dataset`` of samples from :meth:`forfit`, batched by ``batch_size``.

        ``__iter__`` here must yield single samples. ``names`` wraps them into dicts (a
        string, a list of strings, or a list of such lists); ``padded_batch`` pads each
        batch to ``shapes``. Needs TensorFlow; without it iterate the generator
        (``model.fit(gen.forfit(), steps_per_epoch=len(gen))``) or wrap it in a
        ``keras.utils.PyDataset``.
        """
        try:
            import tensorflow as tf
        except ImportError:
            raise ImportError(
                "DataGenerator.to_dataset builds a tf.data.Dataset and needs TensorFlow; without it "
                "pass gen.forfit() with steps_per_epoch=len(gen) to model.fit, or wrap the batches "
                "in a keras.utils.PyDataset"
            ) from None
        generator = self.forfit
        if names is not None:
            if is_string(names):
                def wrap(keys, values):
                    return {keys: values}
            elif is_string(names[0]):
                def wrap(keys, values):
                    return dict(zip(keys, values))
            else:
                def wrap(keys, values):
                    return tuple(dict(zip(k, v)) for k, v in zip(keys, values))

            def generator():
                for d in self.forfit():
                    yield wrap(names, d)

            types, shapes = wrap(names, types), wrap(names, shapes)
        if padded_batch:
            dataset = tf.data.Dataset.from_generator(generator, output_types=types)
            return dataset.padded_batch(self.batch_size, shapes)
        dataset = tf.data.Dataset.from_generator(generator, output_types=types, output_shapes=shapes)
        return dataset.batch(self.batch_size)


# --------------------------------------------------------------------------- more bert4keras 0.11.5 names

is_py2 = False
"""Always False (0.11.5 also ran on Python 2)."""


def lowercase_and_normalize(text: str) -> str:
    """Lower-case, decompose (NFD) and drop combining marks: ``'Café'`` -> ``'cafe'``."""
    text = unicodedata.normalize("NFD", text.lower())
    return "".join(ch for ch in text if unicodedata.category(ch) != "Mn")


def softmax(x, axis: int = -1) -> np.ndarray:
    """Numpy softmax along ``axis`` (max-shifted, so large logits do not overflow)."""
    x = np.asarray(x)
    x = np.exp(x - x.max(axis=axis, keepdims=True))
    return x / x.sum(axis=axis, keepdims=True)


class open:
    """bert4keras's file object: the built-in ``open`` plus random access to lines.

    ``indexable=True`` records the offset of every line so ``f[i]`` reads line ``i``
    (with its newline) and ``len(f)`` counts lines; a path string for ``indexable``
    loads the offsets from that JSON file if it exists, else writes them there.
    In binary mode a given ``encoding`` decodes what is read and encodes what is
    written (0.11.5's Python 2 behaviour); in text mode the built-in ``open`` does it.
    """

    def __init__(self, name, mode: str = "r", encoding: str | None = None, errors: str = "strict",
                 indexable=False):
        self.name = name
        self.binary = "b" in mode
        if self.binary:
            self.file = builtins.open(name, mode)
        else:
            self.file = builtins.open(name, mode, encoding=encoding, errors=errors)
        self.encoding = encoding
        self.errors = errors
        self.iterator = None
        if indexable:
            if is_string(indexable) and os.path.exists(indexable):
                with builtins.open(indexable, encoding="utf-8") as f:
                    self.offsets = json.load(f)
                if not (isinstance(self.offsets, list) and all(isinstance(o, int) for o in self.offsets)):
                    raise ValueError(f"{indexable}: not a line index (a JSON list of offsets)")
            else:
                self.create_indexes()
                if is_string(indexable):
                    tmp = f"{indexable}.tmp{os.getpid()}"
                    with builtins.open(tmp, "w", encoding="utf-8") as f:
                        json.dump(self.offsets, f)
                    os.replace(tmp, indexable)

    def _decode(self, text):
        if self.binary and self.encoding:
            return convert_to_unicode(text, self.encoding, self.errors)
        return text

    def create_indexes(self) -> None:
        """Record the offset at which each line starts (``self.offsets``), then rewind."""
        print("creating indexes ...")
        self.offsets, offset = [], 0
        self.seek(0)
        while self.file.readline():
            self.offsets.append(offset)
            offset = self.tell()
        self.seek(0)
        print("indexes created.")

    def __getitem__(self, key: int):
        if not hasattr(self, "offsets"):
            raise TypeError(f"{self.name}: open it with indexable=True to read lines by index")
        self.seek(self.offsets[key])
        return self.readline()

    def __len__(self) -> int:
        if not hasattr(self, "offsets"):
            raise TypeError(f"{self.name}: open it with indexable=True to count its lines")
        return len(self.offsets)

    def __iter__(self):
        for line in self.file:
            yield self._decode(line)

    def next(self):
        if self.iterator is None:
            self.iterator = self.__iter__()
        return next(self.iterator)

    __next__ = next

    def read(self):
        return self._decode(self.file.read())

    def readline(self):
        return self._decode(self.file.readline())

    def readlines(self) -> list:
        return [self._decode(line) for line in self.file.readlines()]

    def write(self, text) -> None:
        if self.binary and self.encoding and isinstance(text, str):
            text = text.encode(self.encoding, self.errors)
        self.file.write(text)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()

    def tell(self) -> int:
        return self.file.tell()

    def seek(self, offset: int = 0):
        return self.file.seek(offset)

    def __enter__(self):
        return self

    def __exit__(self, type, value, tb):
        self.close()


def insert_arguments(**arguments):
    """Decorator for ``__init__``: accept extra keywords, store each as ``self.<name>`` (default if absent)."""

    def decorator(func: Callable) -> Callable:
        @functools.wraps(func)
        def new_func(self, *args, **kwargs):
            for key, default in arguments.items():
                setattr(self, key, kwargs.pop(key, default))
            return func(self, *args, **kwargs)

        return new_func

    return decorator


def delete_arguments(*arguments):
    """Decorator for ``__init__``: reject the given keywords with a ``TypeError``."""

    def decorator(func: Callable) -> Callable:
        @functools.wraps(func)
        def new_func(self, *args, **kwargs):
            for key in arguments:
                if key in kwargs:
                    raise TypeError(f"{type(self).__name__} got an unexpected keyword argument {key!r}")
            return func(self, *args, **kwargs)

        return new_func

    return decorator


def longest_common_substring(source: Sequence, target: Sequence) -> tuple[int, tuple[int, int, int, int]]:
    """Length of the longest common contiguous run and its spans ``(i0, i1, j0, j1)``.

    ``source[i0:i1] == target[j0:j1]``; of several longest runs, the first one met
    scanning ``source`` then ``target`` is returned. ``(0, (0, 0, 0, 0))`` if none.
    """
    best, span = 0, (0, 0, 0, 0)
    previous = [0] * (len(target) + 1)
    for i, si in enumerate(source, 1):
        current = [0] * (len(target) + 1)
        for j, tj in enumerate(target, 1):
            if si == tj:
                current[j] = previous[j - 1] + 1
                if current[j] > best:
                    best = current[j]
                    span = (i - best, i, j - best, j)
        previous = current
    return best, span


def longest_common_subsequence(source: Sequence, target: Sequence) -> tuple[int, list[tuple[int, int]]]:
    """Length of the longest common (not necessarily contiguous) subsequence and one alignment.

    The alignment is a list of index pairs ``(i, j)`` with ``source[i] == target[j]``,
    increasing in both; the same one 0.11.5 returns when several exist.
    """
    n, m = len(source), len(target)
    c = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if source[i - 1] == target[j - 1]:
                c[i][j] = c[i - 1][j - 1] + 1
            else:
                c[i][j] = max(c[i][j - 1], c[i - 1][j])
    length, mapping = c[n][m], []
    i, j = n - 1, m - 1
    while len(mapping) < length:
        if source[i] == target[j]:
            mapping.append((i, j))
            i, j = i - 1, j - 1
        elif c[i + 1][j] > c[i][j + 1]:
            j -= 1
        else:
            i -= 1
    return length, mapping[::-1]


class WebServing:
    """Python functions as small JSON web endpoints (0.11.5's API), on Starlette under uvicorn.

    ``web = WebServing(port=8864)``; ``web.route('/f', f, {'text': (None, True), 'n': (int, False)})``;
    ``web.start()``. Each argument maps to ``(converter or None, required)`` and is read from the
    query string (GET) or an urlencoded form body (POST); the reply is
    ``{"code": 0, "desc": "succeeded", "data": f(...)}``, code 1 for a missing required argument,
    code 2 with the error text if a converter or ``f`` raises. ``server`` (0.11.5: a bottle
    server name such as ``'paste'``) is accepted and ignored: uvicorn always serves. Needs
    ``pip install 'bert4keras[serving]'``.
    """

    def __init__(self, host: str = "0.0.0.0", port: int = 8000, server: str = "paste"):
        try:
            from starlette.applications import Starlette
        except ImportError:
            raise ImportError("WebServing needs starlette and uvicorn: pip install 'bert4keras[serving]'") from None
        self.host = host
        self.port = port
        self.server = server
        self.app = Starlette()

    def wraps(self, func: Callable, arguments: dict, method: str = "GET") -> Callable:
        """The endpoint for ``func``: read ``arguments`` from the query (GET) or form (POST), reply JSON."""
        from urllib.parse import parse_qsl

        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse, Response

        def answer(outputs: dict, status: int = 200) -> Response:
            return Response(json.dumps(outputs, ensure_ascii=False), status_code=status,
                            media_type="application/json")

        async def endpoint(request):
            outputs = {"code": 0, "desc": "succeeded", "data": {}}
            if method == "GET":
                params = dict(request.query_params)
            else:
                content_type = request.headers.get("content-type", "application/x-www-form-urlencoded")
                if not content_type.startswith("application/x-www-form-urlencoded"):
                    return JSONResponse({"code": 1, "desc": f"POST a form as application/x-www-form-urlencoded, "
                                                            f"not {content_type.split(';')[0]}"}, 415)
                body = await request.body()
                try:
                    params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
                except UnicodeDecodeError:
                    return JSONResponse({"code": 1, "desc": "the form body is not valid UTF-8"}, 400)
            kwargs = {}
            for key, (convert, required) in arguments.items():
                if key not in params:
                    if required:
                        outputs["code"], outputs["desc"] = 1, f'lack of "{key}" argument'
                        return answer(outputs)
                    continue
                kwargs[key] = params[key]
            try:
                for key, (convert, _) in arguments.items():
                    if key in kwargs and convert is not None:
                        kwargs[key] = convert(kwargs[key])
                outputs["data"] = await run_in_threadpool(func, **kwargs)
                return answer(outputs)
            except Exception as e:  # reported to the client, as the service's contract says
                outputs["code"], outputs["desc"], outputs["data"] = 2, str(e), {}
                return answer(outputs)

        return endpoint

    def route(self, path: str, func: Callable, arguments: dict, method: str = "GET") -> None:
        """Serve ``func`` at ``path``."""
        if method not in ("GET", "POST"):
            raise ValueError(f"WebServing.route: method must be 'GET' or 'POST', got {method!r}")
        self.app.add_route(path, self.wraps(func, arguments, method), methods=[method])

    def start(self) -> None:
        """Serve until interrupted (SIGINT / SIGTERM)."""
        import uvicorn

        uvicorn.run(self.app, host=self.host, port=self.port)


class Hook:
    """Wrap a module so that reading its ``uniout`` attribute does nothing (0.11.5's Python 2 hook)."""

    def __init__(self, module):
        self.module = module

    def __getattr__(self, attr):
        if attr == "uniout":
            return uniout
        return getattr(self.module, attr)


uniout = types.ModuleType(
    "uniout", "No-op: on Python 2 0.11.5 imported uniout here to print Chinese; Python 3 needs nothing."
)
