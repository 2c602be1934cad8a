"""Shared test settings: hypothesis profiles (CI runs more examples than a quick local run)."""

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from sparsesim.validation.scalesim_runner import scalesim_python as find_scalesim  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCALESIM_VENV = ROOT / ".venv-scalesim"  # the lookup's CHECKOUT_VENV when run from this checkout


@pytest.fixture(scope="session")
def scalesim_python() -> str:
    """An interpreter with SCALE-Sim 3.0.0 (numpy<2.4 beside it, so in its own venv).

    The one ``sparsesim.validation.scalesim_runner.scalesim_python`` finds
    (``$SPARSESIM_SCALESIM_PYTHON``, else the checkout's ``.venv-scalesim``), else
    ``.venv-scalesim`` made here on first use. Under CI a failure to make it fails the run;
    elsewhere (offline) it skips.
    """
    found = find_scalesim()
    if found:
        return found
    python = SCALESIM_VENV / "bin" / "python"
    if not python.exists():
        steps = [[sys.executable, "-m", "venv", str(SCALESIM_VENV)],
                 [str(python), "-m", "pip", "install", "-q", "scalesim==3.0.0", "numpy<2.4"]]
        for step in steps:
            proc = subprocess.run(step, capture_output=True, text=True)
            if proc.returncode != 0:
                message = f"cannot set up SCALE-Sim: {' '.join(step)}\n{proc.stderr[-2000:]}"
                if os.environ.get("CI"):
                    pytest.fail(message)
                pytest.skip(message)
    return str(python)


TINY_TOML = """[network]
name = "t"
[[layer]]
name = "c1"
op = "conv2d"
c = 4
h = 8
w = 8
m = 8
r = 3
s = 3
[[layer]]
name = "fc"
op = "linear"
in_features = 64
out_features = 10
"""
"""A two-layer workload for tests of the surface (files, progress, plots), not of the model."""


@pytest.fixture(scope="session")
def tiny_toml() -> str:
    """:data:`TINY_TOML`'s text; its dense MACs: c1 6·6 output pixels × 4·3·3 × 8 filters, fc 64 × 10."""
    return TINY_TOML


@pytest.fixture()
def tiny(tmp_path, tiny_toml) -> Path:
    """:data:`TINY_TOML` written to ``tmp_path/tiny.toml``."""
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_toml)
    return path
