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
