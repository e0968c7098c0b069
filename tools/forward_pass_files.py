"""List, for every model in ``bert4keras.models.MODELS``, the files its forward pass is read in.

The forward pass is what ``Transformer.call`` runs: ``apply_embeddings``,
``apply_main_layers`` and ``apply_final_layers``, plus every method those call on
``self`` (``self.x(...)``, ``super().x(...)``, ``Base.x(self, ...)``), followed
transitively and resolved through the model's MRO. Methods of ``Transformer``
itself and of the mask mixins in ``models/base.py`` are the block kit every
model shares; they are listed apart and not counted, so the count says how many
model files a reader opens to follow one model's block.

Usage: ``python tools/forward_pass_files.py [--markdown]``.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import sys
import textwrap

HOOKS = ("apply_embeddings", "apply_main_layers", "apply_final_layers")


def defining_class(cls: type, name: str, after: type | None = None) -> type | None:
    """The class in ``cls``'s MRO (past ``after``, for ``super()``) whose body defines ``name``."""
    mro = cls.__mro__
    if after is not None:
        mro = mro[mro.index(after) + 1:]
    return next((c for c in mro if name in vars(c)), None)


def called_methods(function) -> list[tuple[str, str | None]]:
    """``(name, how)`` of the methods ``function`` calls on its instance: how is ``'self'``,
    ``'super'`` or the name of the class in an explicit ``Base.name(self, ...)`` call."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return []
    calls = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        target = node.func.value
        if isinstance(target, ast.Name) and target.id == "self":
            calls.append((node.func.attr, "self"))
        elif isinstance(target, ast.Call) and getattr(target.func, "id", None) == "super":
            calls.append((node.func.attr, "super"))
        elif (isinstance(target, ast.Name) and node.args and isinstance(node.args[0], ast.Name)
              and node.args[0].id == "self"):
            calls.append((node.func.attr, target.id))
    return calls


def forward_pass_methods(cls: type) -> set[tuple[type, str]]:
    """Every ``(defining class, method name)`` the forward pass of ``cls`` can run."""
    seen: set[tuple[type, str]] = set()
    todo = [(defining_class(cls, hook), hook) for hook in HOOKS]
    while todo:
        owner, name = todo.pop()
        if owner is None or (owner, name) in seen:
            continue
        function = vars(owner)[name]
        if not callable(function):
            continue
        seen.add((owner, name))
        module = sys.modules[owner.__module__]
        for called, how in called_methods(function):
            if how == "self":
                todo.append((defining_class(cls, called), called))
            elif how == "super":
                todo.append((defining_class(cls, called, after=owner), called))
            elif isinstance(getattr(module, how, None), type):
                todo.append((defining_class(getattr(module, how), called), called))
    return seen


def bases_between(cls: type, kit_module: str) -> list[str]:
    """The model classes between ``cls`` and ``Transformer`` (mixins of the kit left out)."""
    kit = sys.modules[kit_module]
    return [c.__name__ for c in cls.__mro__[1:]
            if issubclass(c, kit.Transformer) and c.__module__ != kit_module]


def table(models: dict[str, type], kit_module: str) -> list[tuple[str, str, list[str], list[str], list[str]]]:
    """Rows ``(registry names, class, model files, kit methods, bases)``, one per distinct class."""
    names: dict[type, list[str]] = {}
    for name, cls in models.items():
        names.setdefault(cls, []).append(name)
    package = sys.modules[kit_module.split(".")[0]]
    root = os.path.dirname(os.path.dirname(os.path.abspath(package.__file__)))
    rows = []
    for cls, aliases in names.items():
        methods = forward_pass_methods(cls)
        files = sorted({os.path.relpath(inspect.getsourcefile(owner), root)
                        for owner, _ in methods if owner.__module__ != kit_module})
        kit = sorted(name for owner, name in methods if owner.__module__ == kit_module)
        if not files:  # no hook of its own: it builds other models (T5: encoder + decoder)
            files = [os.path.relpath(inspect.getsourcefile(cls), root) + " (composite)"]
        rows.append((", ".join(aliases), cls.__name__, files, kit, bases_between(cls, kit_module)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--kit", action="store_true", help="also list the base-kit methods used")
    args = parser.parse_args()
    from bert4keras.models import MODELS

    rows = table(MODELS, "bert4keras.models.base")
    if args.markdown:
        print("| model (registry names) | class | bases below Transformer | files | count |")
        print("|---|---|---|---|---|")
    for aliases, cls, files, kit, bases in rows:
        chain = " > ".join(bases) or "-"
        if args.markdown:
            print(f"| {aliases} | `{cls}` | {chain} | {', '.join(files)} | {len(files)} |")
        else:
            print(f"{cls:16} {len(files)}  {', '.join(files):50} bases: {chain}   [{aliases}]")
        if args.kit:
            print(f"{'':19}kit: {', '.join(kit)}")


if __name__ == "__main__":
    main()
