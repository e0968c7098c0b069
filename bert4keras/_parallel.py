"""parallel_apply: bert4keras's bounded-queue map over processes or threads.

Unlike bert4keras 0.11.5 it works under every start method (fork, spawn,
forkserver), never calls Queue.qsize() (unsupported on macOS), and re-raises an
exception from `func` in the caller instead of hanging. See docs/tokenizers.md
for tokenizing a large corpus on all cores.
"""

from __future__ import annotations

import functools
import multiprocessing
import pickle
import queue
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

__all__ = ["count_tokens", "parallel_apply", "parallel_apply_generator"]

_POLL_SECONDS = 0.05


class RemoteTraceback(Exception):
    """The traceback of an exception raised by `func` inside a worker (shown as the cause)."""

    def __str__(self) -> str:
        return "\n" + self.args[0]


def _picklable_error(error: BaseException) -> BaseException:
    """The exception itself if it pickles, else a RuntimeError carrying its text."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def _worker(func: Callable, in_queue: Any, out_queue: Any, seed: Any, reseed: bool, pickled: bool) -> None:
    """Worker loop: (index, item) in, (index, ok, result or error, traceback) out; None stops it."""
    if reseed:
        import numpy as np

        np.random.seed(seed)
    while True:
        task = in_queue.get()
        if task is None:
            return
        index, item = task
        try:
            result = func(pickle.loads(item) if pickled else item)
            out_queue.put((index, True, pickle.dumps(result) if pickled else result, None))
        except BaseException as error:  # report everything; the caller re-raises it
            if pickled:
                error = _picklable_error(error)
            out_queue.put((index, False, error, traceback.format_exc()))


def _default_context() -> Any:
    """fork where it is safe to default to (Linux and other Unixes but macOS), else the platform default."""
    if "fork" in multiprocessing.get_all_start_methods() and sys.platform != "darwin":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def parallel_apply_generator(
    func: Callable[[Any], Any],
    iterable: Iterable,
    workers: int,
    max_queue_size: int,
    dummy: bool = False,
    random_seeds: bool | Sequence[Any] | None = True,
    *,
    start_method: str | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield (index, func(item)) for every item, in completion order.

    dummy=True uses threads. At most max_queue_size items wait in the input queue.
    random_seeds: True reseeds numpy in every worker from fresh entropy, a list gives
    its seeds to the first workers, False/None leaves the RNG alone. start_method
    defaults to 'fork' (not on macOS); with 'spawn'/'forkserver', func and items must
    pickle (a module-level function).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if random_seeds is True:
        seeds = [None] * workers
    elif random_seeds is None or random_seeds is False:
        seeds = []
    else:
        seeds = list(random_seeds)
    pickled, method = not dummy, "threads"
    if dummy:
        in_queue, out_queue = queue.Queue(max_queue_size), queue.Queue()
        pool = [
            threading.Thread(
                target=_worker,
                args=(func, in_queue, out_queue, seeds[k] if k < len(seeds) else None, k < len(seeds), False),
                daemon=True,
            )
            for k in range(workers)
        ]
    else:
        context = multiprocessing.get_context(start_method) if start_method else _default_context()
        method = context.get_start_method()
        in_queue, out_queue = context.Queue(max_queue_size), context.Queue()
        pool = [
            context.Process(
                target=_worker,
                args=(func, in_queue, out_queue, seeds[k] if k < len(seeds) else None, k < len(seeds), True),
                daemon=True,
            )
            for k in range(workers)
        ]
    try:
        for worker in pool:
            try:
                worker.start()
            except (pickle.PicklingError, AttributeError, TypeError) as e:
                raise ValueError(
                    f"func {func!r} cannot be sent to '{method}' worker processes ({e}); "
                    "use a module-level function, start_method='fork', or dummy=True"
                ) from e

        def receive(block: bool) -> tuple[int, Any] | None:
            try:
                index, ok, value, trace = out_queue.get(timeout=_POLL_SECONDS) if block else out_queue.get_nowait()
            except queue.Empty:
                dead = [w.exitcode for w in pool if not dummy and not w.is_alive()]
                if dead:
                    raise RuntimeError(f"a parallel_apply worker process died (exit code {dead[0]})") from None
                return None
            if not ok:
                raise value from RemoteTraceback(trace)
            return index, pickle.loads(value) if pickled else value

        sent = received = 0
        for index, item in enumerate(iterable):
            task = (index, pickle.dumps(item) if pickled else item)
            while True:
                try:
                    in_queue.put(task, block=False)
                    break
                except queue.Full:
                    result = receive(block=True)
                    if result is not None:
                        received += 1
                        yield result
            sent += 1
            while (result := receive(block=False)) is not None:
                received += 1
                yield result
        while received < sent:
            result = receive(block=True)
            if result is not None:
                received += 1
                yield result
    finally:
        _stop(pool, in_queue, dummy)


def _stop(pool: list, in_queue: Any, dummy: bool) -> None:
    """Ask idle workers to exit; terminate processes that are still busy."""
    for _ in pool:
        try:
            in_queue.put(None, block=False)
        except queue.Full:
            break
    if dummy:
        return
    for worker in pool:
        if worker.pid is None:
            continue  # never started
        worker.join(timeout=_POLL_SECONDS)
        if worker.is_alive():
            worker.terminate()
            worker.join()
    in_queue.cancel_join_thread()
    in_queue.close()


def parallel_apply(
    func: Callable[[Any], Any],
    iterable: Iterable,
    workers: int,
    max_queue_size: int,
    callback: Callable[[Any], None] | None = None,
    dummy: bool = False,
    random_seeds: bool | Sequence[Any] | None = True,
    unordered: bool = True,
    *,
    start_method: str | None = None,
) -> list | None:
    """[func(item) for item in iterable] on `workers` processes (threads if dummy).

    unordered=True returns results in completion order, False in input order; with a
    callback, each result is passed to it (completion order) and None is returned.
    """
    generator = parallel_apply_generator(
        func, iterable, workers, max_queue_size, dummy, random_seeds, start_method=start_method
    )
    if callback is not None:
        for _, result in generator:
            callback(result)
        return None
    if unordered:
        return [result for _, result in generator]
    return [result for _, result in sorted(generator, key=lambda pair: pair[0])]


def _count_batch(tokenize: Callable[[str], Iterable[str]], texts: list[str]) -> Counter:
    """Token counts of one batch (a small dict: cheap to fill, cheap to send back)."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(tokenize(text))
    return counts


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    batch = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def count_tokens(
    texts: Iterable[str],
    tokenize: Callable[[str], Iterable[str]],
    workers: int,
    batch_size: int = 1000,
) -> Counter:
    """Token frequencies of a corpus: count per batch of texts in parallel, then merge the counts."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    count = functools.partial(_count_batch, tokenize)
    total: Counter = Counter()
    if workers <= 1:
        for batch in _batches(texts, batch_size):
            total.update(count(batch))
        return total
    for _, counts in parallel_apply_generator(count, _batches(texts, batch_size), workers, 2 * workers):
        total.update(counts)
    return total
