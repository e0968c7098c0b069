"""Every public name of bert4keras 0.11.5 exists here, and accepts 0.11.5's parameter names.

The list is tests/data/bert4keras_0_11_5_api.json, generated from the 0.11.5 source by
tools/make_api_list.py. A 0.11.5 parameter must be accepted under the same name: as an
explicit parameter, or through ``**kwargs`` only where the callable forwards them to
something that declares it (checked by name on the class's ``__init__`` chain). Functions
and methods must also take 0.11.5's positional arguments in the same order (class
constructors are checked by keyword only: their 0.11.5 lists merge the ``__init__`` chain).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os

import pytest

API_FILE = os.path.join(os.path.dirname(__file__), "data", "bert4keras_0_11_5_api.json")
with open(API_FILE, encoding="utf-8") as f:
    API = json.load(f)

ENTRIES = [(module, name, entry) for module, names in API["modules"].items() for name, entry in names.items()]


def declared(fn) -> set[str]:
    """Names ``fn`` declares as parameters (positional-or-keyword or keyword-only)."""
    sig = inspect.signature(fn)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in sig.parameters.values() if p.kind in kinds}


def class_keywords(cls) -> set[str]:
    """Keywords ``cls(...)`` accepts by name: each ``__init__`` in the MRO that is reached through ``**kwargs``."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        sig = inspect.signature(init)
        names |= declared(init)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
            break
    return names


def missing_params(wanted, accepted) -> list[str]:
    return [p for p in wanted if p not in accepted]


def positional_mismatch(fn, wanted, bound_method: bool = False) -> str | None:
    """Where a 0.11.5 call passing ``wanted`` positionally would bind differently here, if anywhere."""
    names, var_positional = [], False
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            var_positional = True
            break
    names = names[1:] if bound_method else names
    for i, name in enumerate(wanted):
        if i < len(names) and names[i] != name:
            return f"positional argument {i} is {names[i]!r}, 0.11.5 had {name!r}"
        if i >= len(names) and not var_positional:
            return f"{name!r} (positional argument {i} in 0.11.5) cannot be passed positionally"
    return None


@pytest.mark.parametrize("module, name, entry", ENTRIES, ids=[f"{m}.{n}" for m, n, _ in ENTRIES])
def test_name_exists_with_compatible_parameters(module, name, entry):
    mod = importlib.import_module(f"bert4keras.{module}")
    assert hasattr(mod, name), f"bert4keras.{module}.{name} is missing"
    obj = getattr(mod, name)
    problems = []
    if entry["kind"] == "function":
        assert callable(obj), f"bert4keras.{module}.{name} is not callable"
        lost = missing_params(entry["params"], declared(obj))
        if lost:
            problems.append(f"{name}() does not accept {lost}")
        elif positional_mismatch(obj, entry["params"]):
            problems.append(f"{name}(): {positional_mismatch(obj, entry['params'])}")
        if entry.get("returned_class_keywords"):
            from bert4keras.optimizers import Adam

            lost = missing_params(entry["returned_class_keywords"], class_keywords(obj(Adam)))
            if lost:
                problems.append(f"the class {name}(Adam) returns does not accept {lost}")
    elif entry["kind"] == "class":
        assert inspect.isclass(obj), f"bert4keras.{module}.{name} is not a class"
        lost = missing_params(entry["init"], class_keywords(obj))
        if lost:
            problems.append(f"{name}(...) does not accept {lost}")
        for method, spec in entry["methods"].items():
            if not hasattr(obj, method):
                problems.append(f"{name}.{method} is missing")
            elif spec["kind"] == "method" and not isinstance(inspect.getattr_static(obj, method), property):
                function = getattr(obj, method)
                lost = missing_params(spec["params"], declared(function))
                unbound = inspect.isfunction(inspect.getattr_static(obj, method))
                if lost:
                    problems.append(f"{name}.{method}() does not accept {lost}")
                elif positional_mismatch(function, spec["params"], unbound):
                    problems.append(f"{name}.{method}(): {positional_mismatch(function, spec['params'], unbound)}")
    assert not problems, f"bert4keras.{module}: " + "; ".join(problems)


@pytest.mark.parametrize("name", API["K"])
def test_keras2_backend_function_exists(name):
    from bert4keras.backend import K

    assert callable(getattr(K, name, None)), f"bert4keras.backend.K.{name} is missing"


def test_api_file_is_what_the_generator_writes(tmp_path):
    """The committed list matches tools/make_api_list.py's output when the 0.11.5 source is at hand."""
    source = os.environ.get("BERT4KERAS_0115_SOURCE", "")
    if not os.path.isfile(os.path.join(source, "backend.py")):
        pytest.skip("bert4keras 0.11.5 source not available (set BERT4KERAS_0115_SOURCE)")
    import runpy

    tool = runpy.run_path(os.path.join(os.path.dirname(__file__), "..", "tools", "make_api_list.py"))
    out = tmp_path / "api.json"
    tool["main"](source, str(out))
    assert json.loads(out.read_text(encoding="utf-8")) == API


def test_transformer_create_variable_uses_the_checkpoint_layout():
    import keras
    import numpy as np

    from bert4keras.models import BERT

    bert = BERT(vocab_size=10, hidden_size=4, num_hidden_layers=1, num_attention_heads=1,
                intermediate_size=8, max_position=8)
    value = np.arange(6, dtype="float32").reshape(2, 3)
    variable, exported = bert.create_variable("cls/seq_relationship/output_weights", value)
    np.testing.assert_array_equal(exported, value.T)  # BERT stores the NSP kernel transposed
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value.T)
    assert variable.name == "output_weights" and variable.dtype == keras.config.floatx()
    variable, exported = bert.create_variable("bert/pooler/dense/kernel", value, dtype="float16")
    assert exported is value and variable.dtype == "float16"
