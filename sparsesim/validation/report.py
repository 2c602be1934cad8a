"""The markdown report of a validation run: a summary, one table row per check, then a
section per group (its setting and differences in words, each row's reasons and every miss,
the notes the checks left, the figures linked relatively).
"""

from __future__ import annotations

from pathlib import Path

from sparsesim.errors import SparsesimError
from sparsesim.validation.registry import GROUPS, ValidationRun

REPORT_NAME = "validation.md"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_report(run: ValidationRun) -> str:
    """The markdown report: summary, one table row per check, a section per group."""
    n_pass = sum(c.passed for c in run.checks)
    lines = [
        "# Validation report",
        "",
        (f"Written by `sparsesim validate{' --fast' if run.fast else ''}` "
         "(`analysis/validation.py`). Every check states its anchor, where the anchor comes "
         "from, and a tolerance fixed before the run; a miss is reported as a fail, not tuned "
         "away. No tolerance was widened after seeing a result; a setting changed after a "
         "first run is disclosed, with the reason, in its section."),
        "",
        f"**{n_pass}/{len(run.checks)} checks pass**"
        + (f" — failing: {', '.join(c.id for c in run.failed)}." if run.failed else "."),
        "",
        "| id | what is compared | anchor | source | ours | tolerance | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in run.checks:
        lines.append("| " + " | ".join(_cell(x) for x in (
            f"`{c.id}`", c.what, c.anchor, c.source, c.ours, c.tolerance,
            "pass" if c.passed else "**FAIL**")) + " |")
    for key, group in GROUPS.items():
        rows = [c for c in run.checks if c.group == key]
        if not rows:
            continue
        lines += ["", f"## {group.title}", "", group.text, ""]
        for c in rows:  # the table has the numbers; here the reasons, and every miss
            if c.note or not c.passed:
                mark = "pass" if c.passed else "FAIL"
                lines.append(f"- `{c.id}` ({mark}): {c.ours}"
                             + (f" — {c.note}" if c.note else ""))
        for note in run.notes.get(key, ()):
            lines += ["", note]
        for f in run.figures:
            if f.group == key:
                lines += ["", f"![{f.caption}]({f.file})", "", f"*{f.caption}.*"]
    return "\n".join(lines) + "\n"


def write_report(run: ValidationRun, out_dir: Path, name: str = REPORT_NAME) -> Path:
    """Write :func:`render_report` to ``out_dir/name`` (figures are already there)."""
    path = Path(out_dir) / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_report(run), encoding="utf-8")
    except OSError as err:
        raise SparsesimError(f"cannot write the report: {err.strerror}", file=str(path)) from None
    return path

