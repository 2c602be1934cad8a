"""The static checks in pyproject.toml: imports point down the layers of STYLE.md (import-linter)
and the package type-checks (mypy, strict on the core layers)."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contract_holds():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("import-linter is a test dependency: pip install -e '.[test]'")
    proc = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_package_type_checks(tmp_path):
    """mypy with the project's configuration ([tool.mypy]); its cache goes to a temp folder."""
    if importlib.util.find_spec("mypy") is None:
        pytest.fail("mypy is a test dependency: pip install -e '.[test]'")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_module_is_in_a_layer():
    """A new module must be placed in the contract, or the contract silently ignores it."""
    import tomllib

    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"][0]["layers"]
    named = {m.strip().strip("()") for layer in layers for m in layer.split("|")}
    modules = {f"sparsesim.{p.stem}" for p in (ROOT / "sparsesim").glob("*.py")
               if p.stem != "__init__"}
    modules |= {f"sparsesim.{p.name}" for p in (ROOT / "sparsesim").iterdir()
                if p.is_dir() and (p / "__init__.py").exists()}
    assert modules <= named, f"modules missing from the layer contract: {modules - named}"
    assert sys.version_info >= (3, 11)


def test_every_package_ships():
    """pyproject lists the packages by hand (workloads/ is mapped in): a new folder must be in
    the list, or a non-editable install silently lacks it."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "sparsesim").rglob("__init__.py")}
    assert found | {"sparsesim.workload.builtin"} == listed
