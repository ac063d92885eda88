"""The package's shape: one-way layers, an export list that importing cannot break, documented functions."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import types
from pathlib import Path

import sas_lens as sl

PACKAGE = Path(sl.__file__).parent

# Which layers each layer may import (lazily inside functions too). Everything sits on ``base``.
BASE = {"errors", "typing", "_version", "distributed"}
MAY_IMPORT = {
    "base": set(),
    "loading": {"base"},
    "steering": {"base", "loading"},
    "analysis": {"base", "loading", "steering"},
    "topic": {"base", "loading", "steering", "analysis"},
    "evaluation": {"base", "loading", "steering", "analysis", "topic"},
    "sae_training": {"base", "loading"},
    "app": {"base", "loading", "steering", "analysis", "topic", "evaluation", "sae_training", "app"},
}
APP = {"cli", "demo", "testing", "__init__"}


def layer_of(module: str) -> str:
    """``sas_lens.steering.engine`` -> ``steering``; top-level modules by name."""
    parts = module.split(".")
    first = parts[1] if len(parts) > 1 else "__init__"
    if first in BASE:
        return "base"
    if first in APP:
        return "app"
    return first


def module_name(path: Path, package: Path) -> str:
    relative = path.relative_to(package.parent).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sas_lens_imports(path: Path) -> list[tuple[int, str]]:
    """Every ``sas_lens`` module a file imports, with the line (imports inside functions included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "sas_lens"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "sas_lens":  # `from sas_lens import x`: x is a submodule or the package root
                found += [
                    (node.lineno, f"sas_lens.{alias.name}")
                    if alias.name in MAY_IMPORT or alias.name in BASE
                    else (node.lineno, "sas_lens")
                    for alias in node.names
                ]
            elif node.module.split(".")[0] == "sas_lens":
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, "<relative import>"))
    return found


def upward_imports(package: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        importer = module_name(path, package)
        for line, imported in sas_lens_imports(path):
            where = f"{path.relative_to(package.parent)}:{line}"
            if imported == "<relative import>":
                problems.append(f"{where} uses a relative import; import sas_lens.<layer>.<module>")
            elif imported == "sas_lens" and importer != "sas_lens":
                problems.append(f"{where} imports the package root; import the module that defines the name")
            elif imported != "sas_lens" and layer_of(imported) not in MAY_IMPORT[layer_of(importer)] | {
                layer_of(importer)
            }:
                problems.append(
                    f"{where}: {importer} ({layer_of(importer)}) imports {imported} "
                    f"({layer_of(imported)}), a layer above it"
                )
    return problems


def test_layers_import_only_downwards():
    assert upward_imports() == []


def test_the_layer_check_catches_an_upward_import(tmp_path):
    """The check itself can fail: a steering module importing the topic layer is reported."""
    fake = tmp_path / "sas_lens"
    (fake / "steering").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "steering" / "__init__.py").write_text("")
    (fake / "steering" / "engine.py").write_text("def f():\n    from sas_lens.topic.swap import TopicSwap\n")
    assert upward_imports(fake) == [
        "sas_lens/steering/engine.py:2: sas_lens.steering.engine (steering) imports sas_lens.topic.swap "
        "(topic), a layer above it"
    ]


def every_module() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(sl.__path__, "sas_lens."))


def test_importing_every_module_leaves_every_export_intact():
    """Importing a submodule once replaced a same-named export (sl.monosemanticity became a module)."""
    for name in every_module():
        importlib.import_module(name)
    for name in sl.__all__:
        value = getattr(sl, name)
        assert not isinstance(value, types.ModuleType), f"sl.{name} is a module"
        if name != "__version__":
            assert value is getattr(importlib.import_module(sl._EXPORTS[name]), name)
    assert callable(sl.monosemanticity) and callable(sl.latent_index) and callable(sl.width_comparison)


def test_the_export_list_is_small_and_has_steering_hooks():
    assert 20 <= len(sl.__all__) <= 34  # what a notebook calls (wave 3: output_scores); the rest one module away
    assert "steering_hooks" in sl.__all__ and sl.errors.IncompatibleSAEError  # errors one attribute away


def public_functions():
    for name in every_module():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if attr.startswith("_") or getattr(value, "__module__", None) != name:
                continue
            if inspect.isfunction(value) or inspect.isclass(value):
                yield f"{name}.{attr}", value


def test_every_public_class_and_function_has_a_docstring():
    missing = [name for name, value in public_functions() if not (value.__doc__ or "").strip()]
    assert missing == []


def test_every_public_function_documents_its_arguments_and_an_example():
    """What the README promises; exported or not (``sl.x`` or ``sas_lens.subpackage.module.x``)."""
    missing = []
    for name, value in public_functions():
        if not inspect.isfunction(value):
            continue  # classes: documented by their attributes
        doc = inspect.getdoc(value) or ""
        if "Example" not in doc or ">>>" not in doc:
            missing.append(f"{name}: no example")
        arguments = [p for p in inspect.signature(value).parameters if p not in ("self", "kwargs", "args")]
        if arguments and "Args:" not in doc:
            missing.append(f"{name}: arguments undocumented")
    assert missing == []
