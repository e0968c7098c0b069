"""Write tests/data/bert4keras_0_11_5_api.json: bert4keras 0.11.5's public names, read with ``ast``.

Usage: python tools/make_api_list.py /path/to/bert4keras-0.11.5/bert4keras [output.json]

For each module (backend, layers, models, optimizers, snippets, tokenizers) it lists the
module-level functions and classes, the public names bound by assignment (in every branch
of a module-level ``if``), and the re-exports scripts import (``backend.keras``,
``backend.K``, ``snippets.uniout``). Functions carry their parameter names; classes carry
``__init__`` (resolved through same-module bases and ``@insert_arguments``) and their public
methods; ``extend_with_*`` functions carry the keywords their returned class adds. It also
lists the ``K.xxx`` backend functions used by 0.11.5's source, examples and pretraining scripts.
The 0.11.5 code is only parsed, never imported (it needs TensorFlow 1/2 and Keras 2).
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys

MODULES = ("backend", "layers", "models", "optimizers", "snippets", "tokenizers")

# Re-exported imports that scripts use from these modules.
REEXPORTS = {"backend": ["keras", "K"], "snippets": ["uniout"]}

# Public-looking names deliberately left out, with the reason (kept in the JSON).
EXCLUDED = {
    "layers.Node": "0.11.5's patch of a Keras 2 Node bug (siamese models); Keras 3 has no such class to patch",
    "layers.NodeBase": "the Keras 2 Node class that patch derived from",
    "layers.Model": "0.11.5 redefined keras.models.Model only for Keras < 2.2.5 (fit on generators)",
    "snippets.basestring": "Python 2 shim (str on Python 3)",
    "K.epislon": "a typo in 0.11.5's Adam (K.epislon), never reached",
}

# Keras framework hooks: their signatures belong to Keras 3, not to bert4keras.
KERAS_HOOKS = {
    "call", "build", "compute_mask", "compute_output_shape", "get_config", "from_config",
    "get_updates", "get_gradients",
}


def params(fn: ast.FunctionDef, drop_first: bool) -> list[str]:
    """Parameter names that can be passed by name (positional-or-keyword, then keyword-only)."""
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs]
    if drop_first and names and not any(_decorator_name(d) == "staticmethod" for d in fn.decorator_list):
        names = names[1:]
    return names


def _decorator_name(node) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def inserted_arguments(fn: ast.FunctionDef) -> list[str]:
    """Keywords added by ``@insert_arguments(name=default, ...)``."""
    out = []
    for d in fn.decorator_list:
        if isinstance(d, ast.Call) and _decorator_name(d) == "insert_arguments":
            out += [k.arg for k in d.keywords]
    return out


def init_params(cls: ast.ClassDef, classes: dict) -> list[str]:
    """Keywords ``cls(...)`` accepts: its ``__init__`` parameters, ``@insert_arguments`` keywords,
    and, where ``**kwargs`` is passed on, those of its same-module bases (in base order)."""
    init = next((m for m in cls.body if isinstance(m, ast.FunctionDef) and m.name == "__init__"), None)
    names = []
    if init is not None:
        names = params(init, True) + inserted_arguments(init)
        if init.args.kwarg is None:
            return names
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id in classes and base.id != cls.name:
            names += [n for n in init_params(classes[base.id], classes) if n not in names]
    return names


def class_info(cls: ast.ClassDef, classes: dict) -> dict:
    return {"init": init_params(cls, classes)}


def public_methods(cls: ast.ClassDef, module: str) -> dict:
    out = {}
    for m in cls.body:
        if not isinstance(m, ast.FunctionDef) or m.name.startswith("_"):
            continue
        if module in ("layers", "optimizers") and m.name in KERAS_HOOKS:
            continue
        if any(_decorator_name(d) in ("property", "setter") for d in m.decorator_list):
            out[m.name] = {"kind": "property"}
        else:
            out[m.name] = {"kind": "method", "params": params(m, True)}
    return out


def returned_class_keywords(fn: ast.FunctionDef) -> list[str]:
    """For ``extend_with_*``: the keywords the nested class's ``__init__`` inserts."""
    for node in fn.body:
        if isinstance(node, ast.ClassDef):
            for m in node.body:
                if isinstance(m, ast.FunctionDef) and m.name == "__init__":
                    return inserted_arguments(m)
    return []


def assigned_names(body: list) -> list[str]:
    """Names bound by assignment at module level, looking into ``if``/``else`` branches."""
    names = []
    for node in body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.append(target.id)
        elif isinstance(node, ast.If):
            names += assigned_names(node.body) + assigned_names(node.orelse)
    return names


def defined(body: list, kind) -> list:
    out = []
    for node in body:
        if isinstance(node, kind):
            out.append(node)
        elif isinstance(node, ast.If):
            out += defined(node.body, kind) + defined(node.orelse, kind)
    return out


def module_api(name: str, tree: ast.Module) -> dict:
    classes = {c.name: c for c in defined(tree.body, ast.ClassDef)}
    api = {}
    for fn in defined(tree.body, ast.FunctionDef):
        if fn.name.startswith("_"):
            continue
        entry = {"kind": "function", "params": params(fn, False)}
        if any(_decorator_name(d) == "export_to_custom_objects" for d in fn.decorator_list):
            entry["params"].append("name")  # the decorator's wrapper adds name=None
        if fn.name.startswith("extend_with_") and name == "optimizers":
            entry["returned_class_keywords"] = returned_class_keywords(fn)
        api[fn.name] = entry
    for cls in classes.values():
        if cls.name.startswith("_"):
            continue
        api[cls.name] = {"kind": "class", **class_info(cls, classes), "methods": public_methods(cls, name)}
    for var in assigned_names(tree.body):
        if not var.startswith("_") and var not in api:
            api[var] = {"kind": "value"}
    for var in REEXPORTS.get(name, []):
        api[var] = {"kind": "value"}
    return {k: api[k] for k in sorted(api) if f"{name}.{k}" not in EXCLUDED}


def k_functions(root: str) -> list[str]:
    """``K.xxx`` names used by 0.11.5's package, examples and pretraining scripts."""
    found = set()
    for folder in (root, os.path.join(root, "..", "examples"), os.path.join(root, "..", "pretraining")):
        if not os.path.isdir(folder):
            continue
        for file in sorted(os.listdir(folder)):
            if file.endswith(".py"):
                with open(os.path.join(folder, file), encoding="utf-8") as f:
                    found.update(re.findall(r"\bK\.([a-z_][a-z_0-9]*)\b", f.read()))
    return sorted(n for n in found if f"K.{n}" not in EXCLUDED)


def main(root: str, output: str) -> None:
    api = {"source": "bert4keras 0.11.5", "modules": {}, "excluded": EXCLUDED}
    for name in MODULES:
        with open(os.path.join(root, f"{name}.py"), encoding="utf-8") as f:
            api["modules"][name] = module_api(name, ast.parse(f.read()))
    api["K"] = k_functions(root)
    tmp = output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(api, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, output)
    total = sum(len(m) for m in api["modules"].values()) + len(api["K"])
    print(f"{output}: {total} names")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else
         os.path.join(os.path.dirname(__file__), "..", "tests", "data", "bert4keras_0_11_5_api.json"))
