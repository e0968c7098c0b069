"""TF checkpoint reader/writer and PyTorch .bin reader: exactness, dispatch, and failure modes."""

from __future__ import annotations

import os
import pickle
import shutil
import struct
import zipfile

import ml_dtypes
import numpy as np
import pytest

from bert4keras.checkpoints import (
    CheckpointError,
    SafetensorsReader,
    TFCheckpointReader,
    TorchBinReader,
    list_variables,
    load_variable,
    open_checkpoint,
    write_tf_checkpoint,
)
from bert4keras.checkpoints import crc, sstable
from bert4keras.checkpoints.protobuf import varint
from bert4keras.checkpoints.snappy import snappy_decompress

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "tf")
STRING_ENTRIES = {"_CHECKPOINTABLE_OBJECT_GRAPH", "text/.ATTRIBUTES/VARIABLE_VALUE"}


def reference(name: str) -> dict[str, np.ndarray]:
    with np.load(os.path.join(FIXTURES, f"{name}_reference.npz")) as z:
        return {k: z[k] for k in z.files}


def assert_same(got: np.ndarray, want: np.ndarray, name: str = "") -> None:
    """Same dtype, shape and bytes (bit-exact, NaN-safe)."""
    want = np.asarray(want)
    assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    assert got.tobytes() == want.tobytes(), name


# --------------------------------------------------------------------------
# crc32c and snappy
# --------------------------------------------------------------------------


def test_crc32c_check_value_and_the_byte_table_fallback_agree_with_google_crc32c():
    google_crc32c = pytest.importorskip("google_crc32c")
    for crc32c in (crc.crc32c, crc.crc32c_table):
        assert crc32c(b"123456789") == 0xE3069283
        assert crc32c(b"") == 0
    rng = np.random.default_rng(0)
    for n in (1, 255, 4096, 4099, 12345):
        data = rng.integers(0, 256, n, dtype=np.uint8)
        want = google_crc32c.value(data.tobytes())
        assert crc.crc32c_table(data.tobytes()) == want, n
        head = crc.crc32c_table(data[: n // 2].tobytes())
        assert crc.crc32c_table(data[n // 2 :].tobytes(), head) == want, n
        assert crc.crc32c(data) == want == crc.crc32c(data.tobytes()), n
        assert crc.crc32c(data[n // 2 :], crc.crc32c(data[: n // 2])) == want, n
        assert crc.crc32c(data[::3]) == google_crc32c.value(data[::3].tobytes()), n
    assert data.flags.writeable  # the C path must not freeze the caller's array


def test_crc32c_falls_back_to_the_byte_table_without_the_c_extension(monkeypatch):
    data = np.arange(1000, dtype=np.float32)
    want = crc.crc32c(data)
    monkeypatch.setattr(crc, "_google_crc32c", None)
    assert crc.crc32c(data) == want == crc.crc32c_table(data.tobytes())


def test_crc32c_uses_the_c_extension_when_installed():
    google_crc32c = pytest.importorskip("google_crc32c")
    if google_crc32c.implementation == "c":
        assert crc._google_crc32c is google_crc32c


def test_snappy_literal_and_overlapping_copy():
    # "abcd" as a literal, then a 1-byte-offset copy of 8 bytes from 4 back (overlapping).
    block = bytes([12, 3 << 2]) + b"abcd" + bytes([(8 - 4) << 2 | 1, 4])
    assert snappy_decompress(block, "x") == b"abcdabcdabcd"
    with pytest.raises(CheckpointError, match="snappy"):
        snappy_decompress(bytes([5, 0]) + b"a", "x")  # says 5 bytes, holds 1


# --------------------------------------------------------------------------
# fixtures written by real TensorFlow (tools/make_tf_fixtures.py)
# --------------------------------------------------------------------------


def test_tf_zoo_fixture_reads_bit_exact():
    reader = TFCheckpointReader(os.path.join(FIXTURES, "zoo", "zoo"))
    ref = reference("zoo")
    assert reader.format == "tf"
    assert set(reader.names()) == set(ref)
    assert set(reader.skipped) == STRING_ENTRIES
    for name, want in ref.items():
        assert_same(reader.get(name), want, name)
    assert reader.dtype("bfloat16/.ATTRIBUTES/VARIABLE_VALUE") == "bfloat16"
    assert reader.shape("scalar/.ATTRIBUTES/VARIABLE_VALUE") == ()
    assert reader.shape("empty/.ATTRIBUTES/VARIABLE_VALUE") == (0, 3)
    with pytest.raises(CheckpointError, match="string"):
        reader.get("_CHECKPOINTABLE_OBJECT_GRAPH")
    with pytest.raises(KeyError, match="nope"):
        reader.get("nope")


def test_tf_bert_fixture_reads_bit_exact_from_every_path_form():
    ref = reference("bert")
    bert = os.path.join(FIXTURES, "bert")
    prefix = os.path.join(bert, "bert_model.ckpt")
    for path in (bert, prefix, prefix + ".index", prefix + ".data-00000-of-00001"):
        reader = open_checkpoint(path)
        assert isinstance(reader, TFCheckpointReader) and reader.prefix == prefix, path
    assert set(reader.names()) == set(ref) and not reader.skipped
    for name, want in ref.items():
        assert_same(reader.get(name), want, name)
    assert reader.shape("cls/seq_relationship/output_weights") == (2, 32)
    assert reader.shape("bert/encoder/layer_1/intermediate/dense/kernel") == (32, 64)
    assert os.path.exists(os.path.join(bert, "bert_config.json"))


def test_tf_sharded_fixture_reads_both_shards():
    reader = open_checkpoint(os.path.join(FIXTURES, "sharded"))
    assert reader.num_shards == 2
    for name, want in reference("sharded").items():
        assert_same(reader.get(name), want, name)


def test_module_level_list_and_load_variable():
    prefix = os.path.join(FIXTURES, "bert", "bert_model.ckpt")
    listed = dict(list_variables(prefix))
    assert listed["bert/embeddings/word_embeddings"] == [100, 32]
    assert_same(
        load_variable(prefix, "bert/pooler/dense/bias"), reference("bert")["bert/pooler/dense/bias"]
    )


# --------------------------------------------------------------------------
# the writer
# --------------------------------------------------------------------------


def dtype_zoo() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    values = {
        name: rng.standard_normal((3, 5)).astype(dt)
        for name, dt in [
            ("f16", np.float16),
            ("f32", np.float32),
            ("f64", np.float64),
            ("bf16", ml_dtypes.bfloat16),
            ("c64", np.complex64),
            ("c128", np.complex128),
        ]
    }
    for dt in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64):
        info = np.iinfo(dt)
        values[np.dtype(dt).name] = np.array([info.min, 0, 1, info.max], dtype=dt)
    values["f32_specials"] = np.array([np.nan, -np.inf, np.inf, -0.0, 1e-45], np.float32)
    values["bool"] = np.array([[True, False, True]])
    values["scalar"] = np.float64(-2.5)
    values["empty"] = np.zeros((4, 0, 2), np.int32)
    values["big/embeddings"] = rng.standard_normal((300, 128)).astype(np.float32)
    values["unicode/名字"] = np.arange(3, dtype=np.int64)
    return values


def expected(value) -> np.ndarray:
    value = np.asarray(value)
    return value.astype(np.float32) if value.dtype == ml_dtypes.bfloat16 else value


def test_writer_reader_round_trip_every_dtype(tmp_path):
    values = dtype_zoo()
    prefix = write_tf_checkpoint(str(tmp_path / "sub" / "model.ckpt"), values)
    reader = TFCheckpointReader(prefix)
    assert reader.names() == sorted(values)
    for name, value in values.items():
        assert_same(reader.get(name), expected(value), name)
        assert reader.dtype(name) == np.asarray(value).dtype.name
    assert sorted(os.listdir(tmp_path / "sub")) == [
        "model.ckpt.data-00000-of-00001",
        "model.ckpt.index",
    ]


def test_writer_accepts_non_contiguous_and_big_endian_arrays(tmp_path):
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    values = {"t": base.T[1:, ::2], "be": np.arange(5, dtype=">i4"), "be_f": base.astype(">f8")}
    reader = TFCheckpointReader(write_tf_checkpoint(str(tmp_path / "m"), values))
    assert_same(reader.get("t"), np.ascontiguousarray(base.T[1:, ::2]))
    assert_same(reader.get("be"), np.arange(5, dtype=np.int32))
    assert_same(reader.get("be_f"), base.astype(np.float64))


def test_writer_spreads_many_keys_over_several_table_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(sstable, "_BLOCK_SIZE", 200)
    values = {
        f"bert/encoder/layer_{i}/output/dense/kernel": np.full((2,), i, np.int32) for i in range(60)
    }
    prefix = write_tf_checkpoint(str(tmp_path / "m"), values)
    blocks_read = []
    read_block = sstable._read_block
    monkeypatch.setattr(sstable, "_read_block", lambda *a: blocks_read.append(a[1]) or read_block(*a))
    reader = TFCheckpointReader(prefix)
    assert len(blocks_read) > 5
    for name, value in values.items():
        assert_same(reader.get(name), value, name)


def test_writer_rejects_what_tf_cannot_hold(tmp_path):
    with pytest.raises(CheckpointError, match="'s'.*dtype"):
        write_tf_checkpoint(str(tmp_path / "m"), {"s": np.array(["a", "b"])})
    with pytest.raises(CheckpointError, match="non-empty"):
        write_tf_checkpoint(str(tmp_path / "m"), {"": np.zeros(2)})


def snappy_literal(data: bytes) -> bytes:
    """A valid (uncompressing) snappy block: one long literal."""
    n = len(data) - 1
    return varint(len(data)) + bytes([62 << 2]) + n.to_bytes(3, "little") + data


def test_reader_decodes_snappy_compressed_index_blocks(tmp_path):
    values = {"a": np.arange(4, dtype=np.float32), "b": np.ones((2, 2), np.int64)}
    prefix = write_tf_checkpoint(str(tmp_path / "m"), values)
    items = sstable.read_table(prefix + ".index")
    out, pos = bytearray(), 0

    def emit(block: bytes, kind: int) -> bytes:
        nonlocal pos
        body = snappy_literal(block) if kind else block
        handle = varint(pos) + varint(len(body))
        out.extend(
            body + bytes([kind]) + struct.pack("<I", crc.mask_crc(crc.crc32c(body + bytes([kind]))))
        )
        pos = len(out)
        return handle

    data_handle = emit(sstable.build_block(items, 16), 1)
    meta_handle = emit(sstable.build_block([], 1), 0)
    index_handle = emit(sstable.build_block([(items[-1][0], data_handle)], 1), 1)
    out += (meta_handle + index_handle).ljust(40, b"\0") + struct.pack("<Q", sstable.TABLE_MAGIC)
    (tmp_path / "m.index").write_bytes(bytes(out))
    reader = TFCheckpointReader(prefix)
    for name, value in values.items():
        assert_same(reader.get(name), value, name)


def test_tf_reads_what_the_writer_wrote(tmp_path):
    tf = pytest.importorskip("tensorflow")
    values = dtype_zoo()
    tf_reader = tf.train.load_checkpoint(write_tf_checkpoint(str(tmp_path / "m"), values))
    for name, value in values.items():
        assert_same(tf_reader.get_tensor(name), value, name)


# --------------------------------------------------------------------------
# corrupt, truncated and mismatched TF checkpoints
# --------------------------------------------------------------------------


@pytest.fixture
def small_ckpt(tmp_path) -> str:
    return write_tf_checkpoint(
        str(tmp_path / "model.ckpt"),
        {"w": np.arange(4000, dtype=np.float32), "b": np.ones(3, np.float32)},
    )


def corrupt(path: str, offset: int, byte: int | None = None) -> None:
    """Flip one byte (or overwrite it with ``byte``); negative offsets count from the end."""
    data = bytearray(open(path, "rb").read())
    data[offset] = data[offset] ^ 0xFF if byte is None else byte
    open(path, "wb").write(bytes(data))


def test_bad_magic_is_reported(small_ckpt):
    corrupt(small_ckpt + ".index", -1)
    with pytest.raises(CheckpointError, match=r"model\.ckpt\.index: bad magic"):
        TFCheckpointReader(small_ckpt)


def test_truncated_index_is_reported(small_ckpt):
    data = open(small_ckpt + ".index", "rb").read()
    open(small_ckpt + ".index", "wb").write(data[:30])
    with pytest.raises(CheckpointError, match=r"model\.ckpt\.index.*too short"):
        TFCheckpointReader(small_ckpt)


def test_index_block_checksum_is_verified(small_ckpt):
    corrupt(small_ckpt + ".index", 10)
    with pytest.raises(CheckpointError, match=r"model\.ckpt\.index: checksum mismatch"):
        TFCheckpointReader(small_ckpt)


def test_truncated_data_shard_is_reported_at_open(small_ckpt):
    data_file = small_ckpt + ".data-00000-of-00001"
    with open(data_file, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(CheckpointError, match=r"data-00000-of-00001: 'w' spans.*past the end"):
        TFCheckpointReader(small_ckpt)


def test_missing_data_shard_is_reported(small_ckpt):
    os.remove(small_ckpt + ".data-00000-of-00001")
    with pytest.raises(CheckpointError, match=r"data-00000-of-00001: data shard 0 of 1 is missing"):
        TFCheckpointReader(small_ckpt)


def test_wrong_crc_is_caught_on_load_unless_disabled(small_ckpt):
    data_file = small_ckpt + ".data-00000-of-00001"
    corrupt(data_file, 12 + 100)  # inside "w" (written after "b")
    reader = TFCheckpointReader(small_ckpt)
    assert_same(reader.get("b"), np.ones(3, np.float32))
    with pytest.raises(CheckpointError, match=r"data-00000-of-00001: crc32c mismatch for 'w'"):
        reader.get("w")
    assert not np.array_equal(
        TFCheckpointReader(small_ckpt, verify=False).get("w"), np.arange(4000)
    )


def test_data_shard_from_another_checkpoint_is_caught(small_ckpt, tmp_path):
    other = write_tf_checkpoint(
        str(tmp_path / "other"), {"w": np.zeros(4000, np.float32), "b": np.zeros(3, np.float32)}
    )
    shutil.copy(other + ".data-00000-of-00001", small_ckpt + ".data-00000-of-00001")
    with pytest.raises(CheckpointError, match="crc32c mismatch"):
        TFCheckpointReader(small_ckpt).get("w")


def test_missing_and_ambiguous_checkpoints_are_reported(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.ckpt.index not found"):
        TFCheckpointReader(str(tmp_path / "nothing.ckpt"))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        open_checkpoint(str(tmp_path))
    write_tf_checkpoint(str(tmp_path / "a"), {"x": np.zeros(1)})
    write_tf_checkpoint(str(tmp_path / "b"), {"x": np.zeros(1)})
    with pytest.raises(CheckpointError, match=r"several TF checkpoints \(a.index, b.index\)"):
        open_checkpoint(str(tmp_path))
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "/elsewhere/b"\n')
    assert open_checkpoint(str(tmp_path)).prefix == str(tmp_path / "b")


# --------------------------------------------------------------------------
# PyTorch .bin
# --------------------------------------------------------------------------


def torch_state():
    torch = pytest.importorskip("torch")
    base = torch.arange(30, dtype=torch.float32).reshape(5, 6)
    state = {
        "dense.weight": torch.randn(4, 3, generator=torch.Generator().manual_seed(0)),
        "view.transposed_offset": base.t()[2:, 1:4],  # non-contiguous, storage offset 6 + 2
        "view.row": base[3],
        "bf16": torch.randn(3, 5).to(torch.bfloat16),
        "half": torch.randn(7).half(),
        "ids": torch.arange(-3, 3),
        "mask": torch.tensor([True, False]),
        "scalar": torch.tensor(1.5, dtype=torch.float64),
        "empty": torch.zeros(0, 4),
        "param": torch.nn.Parameter(torch.ones(2)),
        "head": {"bias": torch.full((3,), 7.0)},
        "step": 10,
    }
    return torch, state


def torch_expected(tensor) -> np.ndarray:
    import torch

    tensor = tensor.detach()
    return tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_torch_bin_reads_exactly_without_torch_code(tmp_path, zip_format):
    torch, state = torch_state()
    path = str(tmp_path / "pytorch_model.bin")
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    reader = open_checkpoint(path)
    assert isinstance(reader, TorchBinReader) and reader.format == "torch"
    flat = {k: v for k, v in state.items() if k not in ("head", "step")}
    flat["head.bias"] = state["head"]["bias"]
    assert reader.names() == sorted(flat)
    assert reader.skipped == {"step": "a int, not a tensor"}
    for name, tensor in flat.items():
        assert_same(reader.get(name), torch_expected(tensor), name)
    assert reader.dtype("bf16") == "bfloat16"


def test_torch_module_state_dict_and_sharded_index(tmp_path):
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    sd = model.state_dict()
    shards = {
        "pytorch_model-00001-of-00002.bin": ["0.weight", "0.bias"],
        "pytorch_model-00002-of-00002.bin": ["1.weight", "1.bias"],
    }
    for file, names in shards.items():
        torch.save({n: sd[n] for n in names}, str(tmp_path / file))
    index = {"weight_map": {n: f for f, names in shards.items() for n in names}}
    (tmp_path / "pytorch_model.bin.index.json").write_text(__import__("json").dumps(index))
    reader = open_checkpoint(str(tmp_path))
    assert isinstance(reader, TorchBinReader)
    assert reader.names() == sorted(sd)
    for name, tensor in sd.items():
        assert_same(reader.get(name), tensor.numpy(), name)


class _Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickles_are_refused(tmp_path):
    marker = str(tmp_path / "pwned")
    payload = pickle.dumps({"w": _Exploit(marker)}, protocol=2)
    zipped = str(tmp_path / "evil.bin")
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
    plain = str(tmp_path / "evil_legacy.bin")
    open(plain, "wb").write(payload)
    for path in (zipped, plain):
        with pytest.raises(
            CheckpointError, match=r"evil.*refusing to unpickle the global (posix|nt)\.system"
        ):
            TorchBinReader(path)
    assert not os.path.exists(marker)


def test_corrupt_torch_files_are_reported(tmp_path):
    torch, state = torch_state()
    legacy = str(tmp_path / "legacy.bin")
    torch.save({"w": torch.ones(1000)}, legacy, _use_new_zipfile_serialization=False)
    data = open(legacy, "rb").read()
    open(legacy, "wb").write(data[:-100])
    with pytest.raises(
        CheckpointError, match=r"legacy\.bin: storage .* needs 4000 bytes.*truncated"
    ):
        TorchBinReader(legacy)
    zipped = str(tmp_path / "zipped.bin")
    torch.save({"w": torch.ones(1000)}, zipped)
    data = open(zipped, "rb").read()
    open(zipped, "wb").write(data[:-200])
    with pytest.raises(CheckpointError, match=r"zipped\.bin: .*truncated"):
        TorchBinReader(zipped)
    garbage = str(tmp_path / "garbage.bin")
    open(garbage, "wb").write(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"garbage\.bin: neither a zip archive nor a pickle"):
        open_checkpoint(garbage)
    with pytest.raises(CheckpointError, match=r"absent\.bin: checkpoint file not found"):
        open_checkpoint(str(tmp_path / "absent.bin"))


# --------------------------------------------------------------------------
# open_checkpoint dispatch
# --------------------------------------------------------------------------


def test_directory_prefers_safetensors_over_bin_over_tf(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.numpy import save_file

    write_tf_checkpoint(str(tmp_path / "bert_model.ckpt"), {"x": np.zeros(2, np.float32)})
    assert isinstance(open_checkpoint(str(tmp_path)), TFCheckpointReader)
    torch.save({"x": torch.zeros(2)}, str(tmp_path / "pytorch_model.bin"))
    assert isinstance(open_checkpoint(str(tmp_path)), TorchBinReader)
    save_file({"x": np.zeros(2, np.float32)}, str(tmp_path / "model.safetensors"))
    assert isinstance(open_checkpoint(str(tmp_path)), SafetensorsReader)
    assert isinstance(open_checkpoint(str(tmp_path / "bert_model.ckpt")), TFCheckpointReader)
    assert isinstance(open_checkpoint(str(tmp_path / "pytorch_model.bin")), TorchBinReader)
