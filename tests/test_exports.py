import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import opslib


def test_all_is_sorted_and_unique():
    assert opslib.__all__ == sorted(set(opslib.__all__))


def test_every_exported_name_exists():
    missing = [name for name in opslib.__all__ if not hasattr(opslib, name)]
    assert missing == []


def test_public_callables_have_docstrings():
    undocumented = [
        name
        for name in opslib.__all__
        if callable(getattr(opslib, name))
        and not (getattr(opslib, name).__doc__ or "").strip()
    ]
    assert undocumented == []


HEAVY_MODULES = (
    "pandas",
    "matplotlib",
    "stripe",
    "httpx",
    "boto3",
    "sqlglot",
    "papermill",
    "ipywidgets",
    "nbformat",
)


def test_import_opslib_leaves_heavy_libraries_unloaded():
    # A fresh interpreter: this test session has imported them all long ago.
    probe = (
        "import sys, json, opslib; "
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == []


def test_first_use_of_a_name_imports_its_module():
    probe = (
        "import sys, json, opslib; before = 'sqlglot' in sys.modules; "
        "opslib.classify_sql; from opslib import Finding; "
        "print(json.dumps([before, 'sqlglot' in sys.modules, "
        "'opslib._finding' in sys.modules, 'pandas' in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == [False, True, True, False]


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        opslib.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        exec("from opslib import no_such_name", {})


def test_type_checking_imports_mirror_the_lazy_exports():
    tree = ast.parse(Path(opslib.__file__).read_text(encoding="utf-8"))
    guarded = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    imported = {
        (node.module, alias.name)
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    exported = {
        (module, name) for module, names in opslib._EXPORTS.items() for name in names
    }
    assert imported == exported
    assert sorted([name for _, name in exported] + ["__version__"]) == opslib.__all__


def test_dir_lists_every_export_and_import_all_loads_their_modules():
    assert set(opslib.__all__) <= set(dir(opslib))
    opslib._import_all()
    assert all(f"opslib.{module}" in sys.modules for module in opslib._EXPORTS)


def test_gate_finds_the_applier_of_a_module_not_imported_yet():
    # A plan read back from a record can reach the gate before its module loaded.
    probe = (
        "import json, sys, opslib; from opslib import _actions; "
        "from opslib._queueverdict import REQUEUE_ACTION as name; "
        "before = [name in _actions._APPLIERS, 'opslib._queueaction' in sys.modules]; "
        "found = _actions._applier(name) is not None; "
        "unknown = _actions._applier('no-such-action') is None; "
        "print(json.dumps([*before, found, unknown]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == [False, False, True, True]
