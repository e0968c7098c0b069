"""Write the TF checkpoint fixtures in tests/fixtures/tf/ with real TensorFlow (run once).

Needs a throwaway environment with TensorFlow (never a bert4keras dependency):
    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu
    /tmp/tfenv/bin/python tools/make_tf_fixtures.py
It also checks that TensorFlow reads back what bert4keras' own writer produces
and records the outcome in tests/fixtures/tf/MANIFEST.json.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

import ml_dtypes
import numpy as np
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tf")
sys.path.insert(0, ROOT)

from bert4keras.checkpoints.tf_checkpoint import write_tf_checkpoint  # noqa: E402

BERT_CONFIG = {
    "vocab_size": 100,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
}


def zoo_values(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One small tensor per dtype and shape kind the reader must handle."""
    return {
        "float32_3d": rng.standard_normal((2, 3, 4)).astype(np.float32),
        "float16": rng.standard_normal((5,)).astype(np.float16),
        "bfloat16": rng.standard_normal((3, 2)).astype(ml_dtypes.bfloat16),
        "float64": rng.standard_normal((4,)),
        "int32": rng.integers(-1000, 1000, (3, 3)).astype(np.int32),
        "int64": np.array([-(2**40), 0, 2**40], dtype=np.int64),
        "int8": np.array([-128, -1, 0, 127], dtype=np.int8),
        "uint8": np.array([0, 1, 255], dtype=np.uint8),
        "bool": np.array([[True, False], [False, True]]),
        "scalar": np.float32(3.25),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def bert_values(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A 2-layer BERT with the variable names of Google's original checkpoints."""
    c = BERT_CONFIG
    h, inter = c["hidden_size"], c["intermediate_size"]

    def w(*shape):
        return (rng.standard_normal(shape) * c["initializer_range"]).astype(np.float32)

    v = {
        "bert/embeddings/word_embeddings": w(c["vocab_size"], h),
        "bert/embeddings/position_embeddings": w(c["max_position_embeddings"], h),
        "bert/embeddings/token_type_embeddings": w(c["type_vocab_size"], h),
        "bert/embeddings/LayerNorm/gamma": 1 + w(h),
        "bert/embeddings/LayerNorm/beta": w(h),
    }
    for i in range(c["num_hidden_layers"]):
        p = f"bert/encoder/layer_{i}/"
        for part in ("query", "key", "value"):
            v[p + f"attention/self/{part}/kernel"] = w(h, h)
            v[p + f"attention/self/{part}/bias"] = w(h)
        v[p + "attention/output/dense/kernel"] = w(h, h)
        v[p + "attention/output/dense/bias"] = w(h)
        v[p + "attention/output/LayerNorm/gamma"] = 1 + w(h)
        v[p + "attention/output/LayerNorm/beta"] = w(h)
        v[p + "intermediate/dense/kernel"] = w(h, inter)
        v[p + "intermediate/dense/bias"] = w(inter)
        v[p + "output/dense/kernel"] = w(inter, h)
        v[p + "output/dense/bias"] = w(h)
        v[p + "output/LayerNorm/gamma"] = 1 + w(h)
        v[p + "output/LayerNorm/beta"] = w(h)
    v.update(
        {
            "bert/pooler/dense/kernel": w(h, h),
            "bert/pooler/dense/bias": w(h),
            "cls/predictions/transform/dense/kernel": w(h, h),
            "cls/predictions/transform/dense/bias": w(h),
            "cls/predictions/transform/LayerNorm/gamma": 1 + w(h),
            "cls/predictions/transform/LayerNorm/beta": w(h),
            "cls/predictions/output_bias": w(c["vocab_size"]),
            "cls/seq_relationship/output_weights": w(2, h),
            "cls/seq_relationship/output_bias": w(2),
        }
    )
    return v


def save_zoo(values: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    """TF2 object-based checkpoint (with its object graph and a string variable)."""
    root = tf.Module()
    for name, value in values.items():
        setattr(root, name, tf.Variable(value))
    root.text = tf.Variable(tf.constant(["hello", "checkpoint"]))
    prefix = tf.train.Checkpoint(root=root).write(os.path.join(OUT, "zoo", "zoo"))
    return {f"{n}/.ATTRIBUTES/VARIABLE_VALUE": v for n, v in values.items()}, prefix


def save_sharded(values: dict[str, np.ndarray]) -> str:
    """TF1 ``Saver(sharded=True)`` over two CPU devices: one data file per device."""
    prefix = os.path.join(OUT, "sharded", "model.ckpt")
    os.makedirs(os.path.dirname(prefix))
    with tf.Graph().as_default():
        for i, (name, value) in enumerate(values.items()):
            with tf.device(f"/cpu:{i % 2}"):
                tf.compat.v1.get_variable(name, initializer=tf.constant(value))
        saver = tf.compat.v1.train.Saver(sharded=True, save_relative_paths=True)
        config = tf.compat.v1.ConfigProto(device_count={"CPU": 2})
        with tf.compat.v1.Session(config=config) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, prefix, write_meta_graph=False)
    return prefix


def save_bert(values: dict[str, np.ndarray]) -> str:
    """TF1-style ``tf.compat.v1.train.Saver`` checkpoint, as Google's BERT release was made."""
    prefix = os.path.join(OUT, "bert", "bert_model.ckpt")
    os.makedirs(os.path.dirname(prefix))
    with tf.Graph().as_default():
        for name, value in values.items():
            tf.compat.v1.get_variable(name, initializer=tf.constant(value))
        saver = tf.compat.v1.train.Saver(save_relative_paths=True)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, prefix, write_meta_graph=False)
    with open(os.path.join(OUT, "bert", "bert_config.json"), "w") as f:
        json.dump(BERT_CONFIG, f, indent=2)
    return prefix


def as_reference(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """npz cannot hold bfloat16: store its (exact) float32 widening."""
    return {
        k: np.asarray(v, np.float32) if np.asarray(v).dtype == ml_dtypes.bfloat16 else np.asarray(v)
        for k, v in values.items()
    }


def check_tf_reads_our_writer(values: dict[str, np.ndarray]) -> None:
    """bert4keras.write_tf_checkpoint -> tf.train.load_checkpoint must be bit-exact."""
    with tempfile.TemporaryDirectory() as tmp:
        prefix = write_tf_checkpoint(os.path.join(tmp, "ours.ckpt"), values)
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
        assert sorted(shapes) == sorted(values), "TF lists other names than we wrote"
        for name, value in values.items():
            got = reader.get_tensor(name)
            value = np.asarray(value)
            assert got.dtype == value.dtype, (name, got.dtype, value.dtype)
            assert got.shape == value.shape, (name, got.shape, value.shape)
            assert got.tobytes() == value.tobytes(), name


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    rng = np.random.default_rng(20240611)
    zoo = zoo_values(rng)
    bert = bert_values(rng)
    zoo_named, zoo_prefix = save_zoo(zoo)
    bert_prefix = save_bert(bert)
    sharded = {
        "sharded/a": zoo["float32_3d"],
        "sharded/b": zoo["int64"],
        "sharded/c": zoo["float16"],
    }
    sharded_prefix = save_sharded(sharded)
    np.savez(os.path.join(OUT, "zoo_reference.npz"), **as_reference(zoo_named))
    np.savez(os.path.join(OUT, "bert_reference.npz"), **as_reference(bert))
    np.savez(os.path.join(OUT, "sharded_reference.npz"), **as_reference(sharded))
    check_tf_reads_our_writer({**zoo, **bert})
    manifest = {
        "tensorflow_version": tf.__version__,
        "zoo": os.path.relpath(zoo_prefix, OUT),
        "bert": os.path.relpath(bert_prefix, OUT),
        "sharded": os.path.relpath(sharded_prefix, OUT),
        "sharded_data_files": sorted(
            f for f in os.listdir(os.path.dirname(sharded_prefix)) if ".data-" in f
        ),
        "tf_reads_write_tf_checkpoint_bit_exact": True,
    }
    with open(os.path.join(OUT, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
