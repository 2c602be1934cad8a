"""A fuzzed input boundary (issue 17 deliverable 6): every loader's input is mutated — a
workload TOML, an arch TOML, an energy table, a sweep spec, a trace's manifest, the flags of
``run`` and ``prune`` — and the real command runs in-process. Each outcome must be success
(exit 0, output written where asked) or exactly one line on stderr with exit 2 (a sweep: 1
when a point failed, its message recorded as one line) — never a traceback (any exception
escaping ``main`` fails the test), never a hang (tiny inputs; absurd sizes are refused by the
size guards), never a file written outside the asked-for path. Bounded: a few dozen examples
per loader, well under a minute in all."""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import asdict
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsesim.arch.energy import EnergyTable
from sparsesim.cli import build_parser, main
from sparsesim.prune import PruneSpec, prune_workload
from sparsesim.workload.layers import Conv2d, Linear
from sparsesim.workload.network import Workload

FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

WORKLOAD = """[network]
name = "tiny"
source = "fuzz"

[defaults]
n = 1

[[layer]]
name = "c1"
op = "conv2d"
c = 3
h = 8
w = 8
m = 8
r = 3
s = 3
padding = 1

[[layer]]
name = "blk"
op = "block"
repeat = 2
  [[layer.body]]
  name = "fc"
  op = "linear"
  in_features = 8
  out_features = 8
  tokens = 4

[[layer]]
name = "att"
op = "attention"
l = 4
e = 8
heads = 2
"""
ARCH = (Path(__file__).resolve().parents[1] / "sparsesim" / "arch" / "presets"
        / "default.toml").read_text(encoding="utf-8")
ENERGY = "".join(f"{k} = {v!r}\n" for k, v in asdict(EnergyTable()).items()
                 if isinstance(v, (int, float)))
SPEC = """[sweep]
name = "s"
out = "s.csv"

[base]
workload = "{workload}"
arch = "default"

[grid]
"sparsity.weight_density" = [1.0, 0.5]
"pe.kind" = ["dense", "skip"]

[[point]]
"sparsity.weight_nm" = [2, 4]
"pe.kind" = "nm"
"""

#: Values a field may be given: in range, out of range, not a number, absurd.
VALUES = ["-1", "0", "1", "2", "3", "0.5", "1.5", "1e300", "-1e300", "nan", "inf", "-inf",
          "true", '"x"', '""', '"2:4"', "[]", "[1, 2]", "{}", "{ a = 1 }", str(2**70),
          "10000000", "99999999999999999999999", '"../../escape"', '"/dev/zero"']
#: Bytes that break a file: not UTF-8, NUL, quotes and brackets cut short.
BYTES = [b"\xff", b"\xfe\xfe", b"\x00", b'"', b"[", b"]]", b"=", b"\n[[layer]]\n", b"\r",
         b"[" * 600]


@st.composite
def mutated_toml(draw, base: str) -> bytes:
    """``base`` with one to three edits: a value replaced, a line dropped or doubled, a key
    renamed, bytes inserted, the text cut."""
    lines = base.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["value", "value", "value", "drop", "double", "rename",
                                     "bytes", "cut"]))
        line = lines[i]
        if kind == "value" and "=" in line:
            key = line.split("=", 1)[0]
            lines[i] = f"{key}= {draw(st.sampled_from(VALUES))}"
        elif kind == "drop":
            del lines[i]
            lines = lines or [""]
        elif kind == "double":
            lines.insert(i, line)
        elif kind == "rename" and "=" in line:
            lines[i] = "zz_" + line.lstrip()
        elif kind == "bytes":
            text = "\n".join(lines).encode()
            at = draw(st.integers(0, len(text)))
            return text[:at] + draw(st.sampled_from(BYTES)) + text[at:]
        elif kind == "cut":
            text = "\n".join(lines).encode()
            return text[: draw(st.integers(0, len(text)))]
    return ("\n".join(lines) + "\n").encode()


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def run_cli(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """The command in-process, in ``cwd``: (exit status, stdout, stderr). An exception other
    than argparse's exit propagates: the test fails with its traceback."""
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def check_outcome(code: int, out: str, err: str, *, allowed: tuple[int, ...] = (0, 2)) -> None:
    assert code in allowed, (code, err)
    assert "Traceback" not in err and "Traceback" not in out
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert "error" in lines[0]


class Sandbox:
    """A temp folder with ``work/`` (the cwd and inputs) and ``out/`` (the one place an
    output is asked for); anything new elsewhere under it is a file written where not
    asked."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="fuzz-")
        self.root = Path(self._dir.name)
        self.work, self.out = self.root / "work", self.root / "out"
        self.work.mkdir()
        self.out.mkdir()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self._dir.cleanup()

    def run(self, argv: list[str], *, outputs: set[Path] = frozenset(),  # type: ignore[assignment]
            allowed: tuple[int, ...] = (0, 2)) -> tuple[int, str, str]:
        before = files_under(self.root)
        code, out, err = run_cli(argv, self.work)
        check_outcome(code, out, err, allowed=allowed)
        new = files_under(self.root) - before
        stray = {p for p in new if p not in outputs and not any(
            p == o or o in p.parents for o in outputs)}
        assert not stray, f"written where not asked: {sorted(map(str, stray))}"
        return code, out, err


def test_the_unmutated_inputs_run():
    """The fuzz bases are valid: each command succeeds on them (so a mutation is what fails)."""
    with Sandbox() as box:
        (box.work / "w.toml").write_text(WORKLOAD)
        (box.work / "a.toml").write_text(ARCH)
        (box.work / "e.toml").write_text(ENERGY)
        assert box.run(["run", "-w", "w.toml", "-a", "a.toml", "--set",
                        "energy.table=e.toml", "--format", "csv"])[0] == 0
        (box.out / "s").mkdir()
        (box.out / "s" / "spec.toml").write_text(SPEC.format(workload=box.work / "w.toml"))
        code, _, err = box.run(["sweep", str(box.out / "s" / "spec.toml"), "-j", "1",
                                "--format", "csv"], outputs={box.out / "s"})
        assert code == 0, err


@FUZZ
@given(text=mutated_toml(WORKLOAD))
def test_fuzzed_workload_toml(text):
    with Sandbox() as box:
        (box.work / "w.toml").write_bytes(text)
        target = box.out / "r.csv"
        code, out, _ = box.run(["run", "-w", "w.toml", "-o", str(target), "--format", "csv"],
                               outputs={target})
        if code == 0:
            assert target.stat().st_size > 0 and out.startswith("network,")


@FUZZ
@given(text=mutated_toml(ARCH))
def test_fuzzed_arch_toml(text):
    with Sandbox() as box:
        (box.work / "w.toml").write_text(WORKLOAD)
        (box.work / "a.toml").write_bytes(text)
        code, out, _ = box.run(["run", "-w", "w.toml", "-a", "a.toml", "--format", "csv"])
        if code == 0:
            assert out.startswith("network,")


@FUZZ
@given(text=mutated_toml(ENERGY))
def test_fuzzed_energy_table(text):
    with Sandbox() as box:
        (box.work / "w.toml").write_text(WORKLOAD)
        (box.work / "e.toml").write_bytes(text)
        box.run(["run", "-w", "w.toml", "--set", "energy.table=e.toml", "--format", "csv"])


@FUZZ
@given(text=st.builds(lambda t: t, mutated_toml(SPEC.format(workload="WORKLOAD"))))
def test_fuzzed_sweep_spec(text):
    """A sweep writes only inside its spec's folder (out is confined there); a failed point
    is exit 1 with its one-line message in the results."""
    with Sandbox() as box:
        (box.work / "w.toml").write_text(WORKLOAD)
        folder = box.out / "s"
        folder.mkdir()
        spec = folder / "spec.toml"
        spec.write_bytes(text.replace(b"WORKLOAD", str(box.work / "w.toml").encode()))
        box.run(["sweep", str(spec), "-j", "1", "--format", "csv"], outputs={folder},
                allowed=(0, 1, 2))


# --- traces ----------------------------------------------------------------------------------

TINY = Workload("tiny", (Conv2d("c1", c=3, h=8, w=8, m=8, r=3, s=3, padding=1),
                         Linear("fc", in_features=8, out_features=4, tokens=5)))
_TRACE_MEMBERS: dict[str, bytes] = {}


def _trace_members() -> dict[str, bytes]:
    if not _TRACE_MEMBERS:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "t.npz"
            prune_workload(TINY, PruneSpec(sparsity=0.5, seed=1)).save(path)
            with zipfile.ZipFile(path) as z:
                _TRACE_MEMBERS.update({n: z.read(n) for n in z.namelist()})
    return dict(_TRACE_MEMBERS)


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


JSON_VALUES = [None, True, -1, 0, 1, 1.5, 2**70, 1e308, "x", "0.5", [], {}, [1, 2],
               {"a": 1}, [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]


@FUZZ
@given(data=st.data())
def test_fuzzed_trace_manifest(data):
    members = _trace_members()
    manifest = json.loads(np.load(io.BytesIO(members["manifest.npy"])).tobytes().decode())
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(manifest) if p]
        path = data.draw(st.sampled_from(paths))
        parent = manifest
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            value = data.draw(st.sampled_from(JSON_VALUES))
            parent[path[-1]] = json.loads(json.dumps(value))  # a copy: later edits stay local
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(json.dumps(manifest).encode(), np.uint8))
    members["manifest.npy"] = buf.getvalue()
    with Sandbox() as box:
        with zipfile.ZipFile(box.work / "t.npz", "w") as z:
            for name, raw in members.items():
                z.writestr(name, raw)
        box.run(["run", "--trace", "t.npz", "--format", "csv"])


@FUZZ
@given(data=st.data())
def test_fuzzed_trace_bytes(data):
    """The trace file itself cut or overwritten somewhere."""
    with Sandbox() as box:
        path = box.work / "t.npz"
        with zipfile.ZipFile(path, "w") as z:
            for name, raw in _trace_members().items():
                z.writestr(name, raw)
        raw = path.read_bytes()
        at = data.draw(st.integers(0, len(raw) - 1))
        if data.draw(st.booleans()):
            raw = raw[:at]
        else:
            raw = raw[:at] + data.draw(st.binary(min_size=1, max_size=8)) + raw[at + 1:]
        path.write_bytes(raw)
        box.run(["run", "--trace", "t.npz", "--format", "csv"])


# --- CLI flags -------------------------------------------------------------------------------

FLAG_VALUES = ["-1", "0", "1", "2", "0.5", "1.5", "nan", "inf", "1e9", "x", "2:4", "0:0",
               "", "99999999999999999999", "4:2", "array.rows=0", "memory.sram_kib_a=nan",
               "pe.kind=nm", "arch.base=tpu_like", "energy.table=/dev/zero",
               "array.rows=99999999999999999999"]


def _options(command: str) -> list[tuple[str, bool]]:
    """(flag, takes a value) of every option of ``command`` but help and the output ones."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    cmd = sub.choices[command]  # type: ignore[index]
    out = []
    for action in cmd._actions:
        flags = [o for o in action.option_strings if o.startswith("--")]
        if not flags or flags[0] in ("--help", "--out", "--plot"):
            continue
        out.append((flags[0], action.nargs != 0))
    return out


RUN_FLAGS = _options("run")
PRUNE_FLAGS = _options("prune")


@st.composite
def flags(draw, options):
    argv: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        flag, takes = draw(st.sampled_from(options))
        argv += [flag, draw(st.sampled_from(FLAG_VALUES))] if takes else [flag]
    return argv


@FUZZ
@given(argv=flags(RUN_FLAGS))
def test_fuzzed_run_flags(argv):
    with Sandbox() as box:
        (box.work / "w.toml").write_text(WORKLOAD)
        if "--workload" not in argv and "-w" not in argv and "--trace" not in argv:
            argv = ["-w", "w.toml", *argv]
        box.run(["run", *argv, "--format", "csv"])


@FUZZ
@given(argv=flags(PRUNE_FLAGS))
def test_fuzzed_prune_flags(argv):
    with Sandbox() as box:
        (box.work / "w.toml").write_text(WORKLOAD)
        if "--model" in argv:  # real models download/train: out of this budget
            return
        if "--workload" not in argv and "-w" not in argv:
            argv = ["-w", "w.toml", *argv]
        target = box.out / "t.npz"
        code, _, _ = box.run(["prune", *argv, "-o", str(target)], outputs={target})
        if code == 0:
            assert target.stat().st_size > 0


# --- what the fuzzing found, pinned -----------------------------------------------------------

def test_a_layer_op_that_is_not_a_string_is_one_line():
    """``op = []`` raised ``TypeError: unhashable type: 'list'`` from the registry lookup."""
    with Sandbox() as box:
        (box.work / "w.toml").write_text(WORKLOAD.replace('op = "linear"', "op = []"))
        code, _, err = box.run(["run", "-w", "w.toml"])
        assert code == 2 and "field 'op'" in err and "blk.0.fc" in err


def test_a_spec_without_out_writes_beside_itself_not_in_the_cwd():
    """Without ``out`` the results went to NAME.csv in the current folder."""
    with Sandbox() as box:
        (box.work / "w.toml").write_text(WORKLOAD)
        folder = box.out / "s"
        folder.mkdir()
        spec = folder / "spec.toml"
        spec.write_text(SPEC.format(workload=box.work / "w.toml").replace('out = "s.csv"\n', ""))
        code, _, err = box.run(["sweep", str(spec), "-j", "1", "--format", "csv"],
                               outputs={folder})
        assert code == 0, err
        assert (folder / "s.csv").is_file() and not (box.work / "s.csv").exists()
