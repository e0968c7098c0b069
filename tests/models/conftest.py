"""Fixtures of the model tests: the exact GELU, and each module's ``ZOO`` built once.

A test asking for ``case`` runs once per entry of its module's ``ZOO`` table, unless it
picks entries itself with ``@pytest.mark.parametrize("case", [...], indirect=True)``.
"""

import pytest
from harness import Zoo

from bert4keras.backend import get_gelu, gelu_erf, set_gelu


@pytest.fixture(scope="module", autouse=True)
def erf_gelu():
    """Pin ``'gelu'`` to the exact GELU (HF's and the numpy references') whatever other
    tests set."""
    previous = "erf" if get_gelu() is gelu_erf else "tanh"
    set_gelu("erf")
    yield
    set_gelu(previous)


@pytest.fixture(scope="module")
def zoo(request, tmp_path_factory) -> Zoo:
    return Zoo(request.module.ZOO, tmp_path_factory)


@pytest.fixture(scope="module")
def case(request, zoo):
    return zoo[request.param]


def pytest_generate_tests(metafunc):
    picked = any("case" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize"))
    if "case" in metafunc.fixturenames and not picked:
        metafunc.parametrize("case", list(metafunc.module.ZOO), indirect=True, scope="module")
