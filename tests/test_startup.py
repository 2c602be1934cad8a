"""Start-up (issue 20 item 5): the CLI's parser and the package import no simulator
dependencies; they are imported when a simulation needs them."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sparsesim

HEAVY = ("pandas", "numba", "simpy", "matplotlib", "torch")


def _loaded_after(code: str) -> set[str]:
    """Top-level packages among HEAVY loaded after ``code`` runs in a fresh interpreter."""
    probe = (f"import sys\n{code}\n"
             f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("code", [
    "import sparsesim",
    "import sparsesim.cli",
    "from sparsesim.cli import build_parser; build_parser().format_help()",
    "from sparsesim import load_arch, load_workload; load_arch('default'); "
    "load_workload('resnet18')",
])
def test_parser_and_loaders_import_no_simulator_dependency(code):
    assert _loaded_after(code) == set()


def test_help_runs_without_them():
    probe = ("import sys, contextlib, io\nfrom sparsesim.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
             f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == []


def test_a_simulation_imports_what_it_needs():
    assert _loaded_after("from sparsesim import simulate") >= {"pandas", "numba", "simpy"}


def test_public_names_resolve_lazily():
    from sparsesim.api import simulate
    from sparsesim.errors import SparsesimError

    assert sparsesim.simulate is simulate
    assert sparsesim.SparsesimError is SparsesimError
    assert set(sparsesim.__all__) <= set(dir(sparsesim))
    with pytest.raises(AttributeError, match="no_such_name"):
        sparsesim.no_such_name  # noqa: B018
