"""The format-crossover study: bits per element of every format as sparsity goes to 99.99 %.

Uniform random masks on a ~square tensor (default 1000 x 1000), values of 8 and 16 bits,
each point measured with the real encoders (the bit count of the arrays they build), next to
the closed form for a uniform random mask. N:M needs structured masks, so it is measured on
its own masks (exactly N random non-zeros in every group of M along axis 0) at its own
densities and kept out of the winner comparison.

Where the winner changes, the measured crossover (the two measured curves interpolated
linearly in density) is compared with the closed-form one (the root of the two closed forms).
Two textbook rules are checked as well: bitmap beats dense below density 1 - 1/n, and a
coordinate list beats a bitmap below density 1/b, b being its index bits per non-zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sparsesim.formats.base import Format
from sparsesim.formats.registry import as_format, make_format
from sparsesim.rules.keep import keep_count
from sparsesim.rules.nm import conformant_mask

if TYPE_CHECKING:  # matplotlib is imported lazily, only to plot
    from matplotlib.figure import Figure

DEFAULT_FORMATS: tuple[str, ...] = ("dense", "bitmap", "rle", "coo", "coo_offset", "csr",
                                    "csc")
"""Formats compared on uniform random masks (specs; ``rle`` uses its default 4-bit runs)."""

NM_POINTS: tuple[tuple[int, int], ...] = ((2, 4), (1, 4), (1, 8), (1, 16))
"""(N, M) pairs measured on N:M-structured masks."""

COLUMNS: tuple[str, ...] = (
    "format", "spec", "mask", "value_bits", "sparsity", "density", "nnz", "data_bits",
    "meta_bits", "total_bits", "bits_per_element", "closed_form_bits_per_element",
    "field_bits", "tensor_shape")
"""Columns of :func:`crossover_study`: one row per format x value_bits x sparsity.

sparsity and density are fractions (realized: nnz / elements); *_bits are bits of the whole
tensor; field_bits lists the width of every encoded field (e.g. ``values=8 runs=4``);
tensor_shape is ``"rows x cols"``; mask is ``uniform`` or ``n:m``.
"""

# (from, to, rule text, rule's crossover density from (value bits, to's index bits per nnz))
TEXTBOOK_RULES: tuple[tuple[str, str, str, Any], ...] = (
    ("dense", "bitmap", "d < 1 - 1/n", lambda n, b: 1.0 - 1.0 / n),
    ("bitmap", "coo", "d < 1/b", lambda n, b: 1.0 / b),
    ("bitmap", "coo_offset", "d < 1/b", lambda n, b: 1.0 / b),
)


def default_sparsities() -> np.ndarray:
    """0 to 99.99 %: densities 10**(-i/10) for i = 0..40, plus every 5 % up to 45 %."""
    densities = np.concatenate([10.0 ** (-np.arange(41) / 10.0),
                                1.0 - np.arange(0.05, 0.46, 0.05)])
    return np.unique(np.round(1.0 - densities, 12))


def study_shape(n_elements: int) -> tuple[int, int]:
    """The most square (rows, cols) with rows * cols == n_elements, rows <= cols."""
    n = int(n_elements)
    rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return rows, n // rows


def _shape_of(text: str) -> tuple[int, int]:
    """``"1000x1000"`` -> (1000, 1000)."""
    rows, cols = (int(v) for v in text.split("x"))
    return rows, cols


def _field_text(widths: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in widths.items())


def _rows_for(fmt: Format, x: np.ndarray, mask_kind: str, value_bits: Sequence[int],
              verify: bool) -> list[dict[str, Any]]:
    enc = fmt.encode(x, value_bits=value_bits[0], name="study")
    if verify and not np.array_equal(enc.format.decode(enc), x):
        raise AssertionError(f"round trip failed for {fmt.spec}")  # a bug, not a user error
    nnz = int(np.count_nonzero(x))
    rows = []
    for vb in value_bits:
        data, meta = replace(enc, value_bits=int(vb)).bits
        exp_data, exp_meta = fmt.expected_bits(x.shape, nnz / x.size, int(vb))
        rows.append({
            "format": fmt.name, "spec": fmt.spec, "mask": mask_kind, "value_bits": int(vb),
            "sparsity": 1.0 - nnz / x.size, "density": nnz / x.size, "nnz": nnz,
            "data_bits": data, "meta_bits": meta, "total_bits": data + meta,
            "bits_per_element": (data + meta) / x.size,
            "closed_form_bits_per_element": float(exp_data + exp_meta) / x.size,
            "field_bits": _field_text({**enc.field_bits, "values": int(vb)}),
            "tensor_shape": f"{x.shape[0]}x{x.shape[1]}",
        })
    return rows


def crossover_study(n_elements: int = 1_000_000, value_bits: Sequence[int] = (8, 16),
                    sparsities: Sequence[float] | None = None, seed: int = 0, *,
                    formats: Sequence[str | Format] = DEFAULT_FORMATS,
                    nm_points: Sequence[tuple[int, int]] = NM_POINTS,
                    verify: bool = True) -> pd.DataFrame:
    """Measure every format's size on seeded uniform random masks over a sparsity grid.

    The masks are nested (one random order of the elements, the first d*L of it non-zero),
    so curves are smooth and every mask is uniform with exactly ``keep_count(L, sparsity=s)``
    non-zeros (the nearest integer to d*L). Values are random non-zero int16; ``value_bits``
    only changes what a value costs, so each tensor is encoded once. ``verify`` checks every
    round trip. Columns: :data:`COLUMNS`.
    """
    shape = study_shape(n_elements)
    size = shape[0] * shape[1]
    grid = default_sparsities() if sparsities is None else np.asarray(sparsities, float)
    vbits = [int(v) for v in value_bits]
    fmts = [as_format(f) for f in formats]
    rng = np.random.default_rng(seed)
    order = rng.permutation(size)
    values = (rng.integers(1, 128, size=size) * rng.choice([-1, 1], size=size)).astype(np.int16)

    rows: list[dict[str, Any]] = []
    for s in np.sort(grid):
        nnz = keep_count(size, sparsity=float(s))
        flat = np.zeros(size, dtype=np.int16)
        flat[order[:nnz]] = values[order[:nnz]]
        x = flat.reshape(shape)
        for fmt in fmts:
            rows.extend(_rows_for(fmt, x, "uniform", vbits, verify))
    for n, m in nm_points:
        mask = conformant_mask(shape, n, m, (0,), rng=rng)
        x = np.where(mask, values.reshape(shape), np.int16(0))
        rows.extend(_rows_for(make_format("nm", n=n, m=m), x, "n:m", vbits, verify))
    return pd.DataFrame(rows, columns=list(COLUMNS))


# ---------------------------------------------------------------------------------------------
# crossovers


def _expected_bpe(fmt: Format, shape: tuple[int, int], density: np.ndarray,
                  value_bits: int) -> np.ndarray:
    data, meta = fmt.expected_bits(shape, density, value_bits)
    bits: np.ndarray = (np.asarray(data) + np.asarray(meta)) / (shape[0] * shape[1])
    return bits


def _closed_form_root(a: Format, b: Format, shape: tuple[int, int], value_bits: int,
                      near_density: float) -> float:
    """Density where the closed forms of a and b cross, the crossing nearest near_density."""
    grid = np.geomspace(1e-7, 1.0, 20001)
    diff = _expected_bpe(a, shape, grid, value_bits) - _expected_bpe(b, shape, grid, value_bits)
    change = np.flatnonzero(np.sign(diff[:-1]) != np.sign(diff[1:]))
    if change.size == 0:
        return float("nan")
    i = int(change[np.argmin(np.abs(np.log(grid[change]) - np.log(near_density)))])
    lo, hi = grid[i], grid[i + 1]
    f_lo = np.sign(diff[i])
    for _ in range(100):  # bisection in log density
        mid = math.sqrt(lo * hi)
        f_mid = np.sign(float(_expected_bpe(a, shape, np.array(mid), value_bits)
                              - _expected_bpe(b, shape, np.array(mid), value_bits)))
        if f_mid == f_lo:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def _measured_root(density: np.ndarray, diff: np.ndarray, i: int) -> float:
    """Density where diff (measured a - b) changes sign between grid points i and i + 1."""
    d0, d1, f0, f1 = density[i], density[i + 1], diff[i], diff[i + 1]
    if f1 == f0:
        return float(d0)
    return float(d0 + (d1 - d0) * (0.0 - f0) / (f1 - f0))


def _uniform(df: pd.DataFrame, value_bits: int) -> tuple[pd.DataFrame, pd.Series]:
    """bits_per_element as sparsity x spec (in study order) and the density per sparsity."""
    u = df[(df["mask"] == "uniform") & (df["value_bits"] == value_bits)]
    specs = list(dict.fromkeys(u["spec"]))
    table = u.pivot_table(index="sparsity", columns="spec", values="bits_per_element")
    density = u.groupby("sparsity")["density"].first()
    return table[specs], density


def crossovers(df: pd.DataFrame) -> pd.DataFrame:
    """Measured vs closed-form crossover sparsity, per winner change and textbook rule.

    One row per (value_bits, kind, from, to): ``kind`` is ``winner`` (the smallest format
    changes from ``from`` to ``to`` as sparsity grows; ties go to the earlier format) or
    ``rule`` (a textbook pair, with its rule's own crossover as the closed form). Sparsities
    are fractions; ``closed_form_rule`` says where ``to`` beats ``from``.
    """
    rows: list[dict[str, Any]] = []
    shape_text = df["tensor_shape"].iloc[0]
    shape = _shape_of(shape_text)
    for vb in sorted(df["value_bits"].unique()):
        table, density = _uniform(df, int(vb))
        dens = density.to_numpy()
        winner = table.idxmin(axis=1).to_numpy()
        for i in range(len(winner) - 1):
            if winner[i] == winner[i + 1]:
                continue
            a, b = as_format(winner[i]), as_format(winner[i + 1])
            diff = (table[winner[i]] - table[winner[i + 1]]).to_numpy()
            measured = _measured_root(dens, diff, i)
            closed = _closed_form_root(a, b, shape, int(vb), measured)
            rows.append(_crossover_row(int(vb), "winner", a, b, measured, closed,
                                       f"{b.formula} < {a.formula}", float(table.index[i]),
                                       float(table.index[i + 1])))
        for frm, to, text, rule in TEXTBOOK_RULES:
            a, b = make_format(frm), make_format(to)
            if a.spec not in table or b.spec not in table:
                continue
            diff = (table[a.spec] - table[b.spec]).to_numpy()
            change = np.flatnonzero(np.sign(diff[:-1]) != np.sign(diff[1:]))
            if change.size == 0:
                continue
            i = int(change[0])
            index_bits = float(np.asarray(b.expected_bits(shape, 1.0, int(vb))[1])) / (
                shape[0] * shape[1])
            rows.append(_crossover_row(int(vb), "rule", a, b, _measured_root(dens, diff, i),
                                       rule(int(vb), index_bits),
                                       f"{text}" + (f", b = {index_bits:g}"
                                                    if "b" in text.split("<")[1] else ""),
                                       float(table.index[i]), float(table.index[i + 1])))
    return pd.DataFrame(rows, columns=[
        "value_bits", "kind", "from_format", "to_format", "measured_sparsity",
        "closed_form_sparsity", "difference_pct_points", "grid_before", "grid_after",
        "closed_form_rule"])


def _crossover_row(vb: int, kind: str, a: Format, b: Format, measured_density: float,
                   closed_density: float, rule: str, before: float,
                   after: float) -> dict[str, Any]:
    measured, closed = 1.0 - measured_density, 1.0 - closed_density
    return {"value_bits": vb, "kind": kind, "from_format": a.spec, "to_format": b.spec,
            "measured_sparsity": measured, "closed_form_sparsity": closed,
            "difference_pct_points": 100.0 * (measured - closed), "grid_before": before,
            "grid_after": after, "closed_form_rule": rule}


# ---------------------------------------------------------------------------------------------
# text and figure


def _pct(s: float) -> str:
    return f"{100.0 * s:.3f}" if s < 0.999 else f"{100.0 * s:.4f}"


def _aligned(header: list[str], body: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in body)]


def render_table(df: pd.DataFrame) -> str:
    """The study as aligned text: bits per element per format and sparsity, the winner, the
    crossovers (measured vs closed form) and the closed forms used."""
    shape = df["tensor_shape"].iloc[0]
    n_el = int(np.prod([int(v) for v in shape.split("x")]))
    out = [f"Format crossover study: {shape} tensor ({n_el:,} elements), uniform random "
           "masks, sizes measured with the encoders, in bits per element (data + metadata)."]
    for vb in sorted(df["value_bits"].unique()):
        table, density = _uniform(df, int(vb))
        winner = table.idxmin(axis=1)
        header = ["sparsity %", "density", *table.columns, "smallest"]
        body = [[_pct(s), f"{density[s]:.4g}", *(f"{v:.4f}" for v in table.loc[s]), winner[s]]
                for s in table.index]
        out += ["", f"{vb}-bit values:"]
        out += _aligned(header, body, set(range(len(header) - 1)))
        nm = df[(df["mask"] == "n:m") & (df["value_bits"] == vb)]
        if len(nm):
            out += ["N:M, measured on N:M-structured masks (not in the comparison above):"]
            out += [f"  {r.spec:<14} sparsity {_pct(r.sparsity):>7} %: "
                    f"{r.bits_per_element:.4f} bits/element (closed form "
                    f"{r.closed_form_bits_per_element:.4f})" for r in nm.itertuples()]
    cross = crossovers(df)
    out += ["", "Crossovers (sparsity %; measured = measured curves interpolated between the "
            "grid points, closed form = root of the closed forms):"]
    header = ["value bits", "kind", "from", "to", "measured %", "closed form %",
              "diff (pp)", "closed form used"]
    body = [[str(r.value_bits), r.kind, r.from_format, r.to_format, _pct(r.measured_sparsity),
             _pct(r.closed_form_sparsity), f"{round(r.difference_pct_points, 3) + 0.0:+.3f}",
             r.closed_form_rule if r.kind == "rule" else "root of the two closed forms"]
            for r in cross.itertuples()]
    out += _aligned(header, body, {0, 4, 5, 6})
    out += ["", "Closed forms, bits per element (n value bits, d density, r run bits, "
            "L elements):"]
    for spec in dict.fromkeys(df["spec"]):
        fmt = as_format(spec)
        line = f"  {fmt.name:<11} {fmt.formula}"
        if line not in out:
            out.append(line)
    return "\n".join(out)


def _label(spec: str) -> str:
    """A format spec for people: ``rle (run_bits=4)``."""
    name, _, params = spec.partition(":")
    return f"{name} ({params})" if params else name


def plot_crossover(df: pd.DataFrame) -> Figure:
    """Bits per element vs sparsity, one panel per value width.

    x: density on a log axis (reversed), labelled in sparsity; y: bits per element, log.
    Markers are measured, thin lines the closed forms, dotted verticals the measured winner
    changes; N:M points are on their own structured masks.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    vbits = sorted(df["value_bits"].unique())
    fig, axes = plt.subplots(1, len(vbits), figsize=(7.2 * len(vbits), 6.2), squeeze=False,
                             sharey=True, layout="constrained")
    shape_text = df["tensor_shape"].iloc[0]
    shape = _shape_of(shape_text)
    cross = crossovers(df)
    cmap = plt.get_cmap("tab10")
    handles: dict[str, Any] = {}
    label_of: dict[str, str] = {}
    styles = ["-", "--", "-.", ":"]
    markers = "osD^vP*X"
    for ax, vb in zip(axes[0], vbits, strict=True):
        table, density = _uniform(df, int(vb))
        fine = np.geomspace(float(density.min()), 1.0, 400)
        shown: list[str] = []
        for j, spec in enumerate(table.columns):
            same = [t for t in shown if np.array_equal(table[t].to_numpy(),
                                                        table[spec].to_numpy())]
            if same:  # e.g. csc = csr on a square tensor: one curve, both names
                if _label(spec) not in label_of[same[0]]:
                    label_of[same[0]] += f" = {_label(spec)} (same size)"
                continue
            shown.append(spec)
            label_of.setdefault(spec, _label(spec))
            color, style, marker = cmap(j % 10), styles[j % len(styles)], markers[j % 8]
            ax.plot(fine, _expected_bpe(as_format(spec), shape, fine, int(vb)), color=color,
                    lw=1.0, ls=style, alpha=0.8)
            handles[spec] = ax.plot(density.to_numpy(), table[spec].to_numpy(), ls=style,
                                    lw=0, marker=marker, ms=3.5, color=color)[0]
        nm = df[(df["mask"] == "n:m") & (df["value_bits"] == vb)]
        for r in nm.itertuples():
            handles["nm"] = ax.plot(r.density, r.bits_per_element, marker="*", ms=11,
                                    color="black", ls="none")[0]
            ax.annotate(r.spec.replace("nm:n=", "").replace(",m=", ":"),
                        (r.density, r.bits_per_element), textcoords="offset points",
                        xytext=(0, -9), ha="center", va="top", fontsize=8,
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none",
                              "alpha": 0.8})
        label_of.setdefault("nm", "N:M, on N:M-structured masks")
        changes = cross[(cross["value_bits"] == vb) & (cross["kind"] == "winner")]
        sequence = [table.idxmin(axis=1).iloc[0].split(":")[0]]
        for r in changes.itertuples():
            d = 1.0 - r.measured_sparsity
            ax.axvline(d, color="grey", ls=":", lw=1.0)
            ax.annotate(_label(r.to_format), (d, 0.02), xycoords=("data", "axes fraction"),
                        xytext=(-1, 0), textcoords="offset points", ha="right", va="bottom",
                        rotation=90, fontsize=8, color="dimgrey",
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none"})
            sequence.append(f"{r.to_format.split(':')[0]} at {100 * r.measured_sparsity:.2f} %")
        # the winner sequence three steps a line: one line ran past a one-panel figure
        steps = [" \u2192 ".join(sequence[i:i + 3]) for i in range(0, len(sequence), 3)]
        ax.set_title(f"{vb}-bit values, {shape_text} tensor\nsmallest format: "
                     + " \u2192\n".join(steps), fontsize=9.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(1.3, float(density.min()) / 1.3)  # reversed: sparsity grows to the right
        ticks = [1.0, 0.5, 0.1, 0.01, 1e-3, 1e-4]
        ax.set_xticks(ticks, [f"{100 * (1 - t):g}" for t in ticks])
        ax.set_xticks([], minor=True)
        ax.set_xlabel("sparsity (%), log scale in density = 1 - sparsity")
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("bits per element (data + metadata)")
    fig.legend([handles[k] for k in label_of], list(label_of.values()), loc="outside lower center",
               ncol=min(len(label_of), 2 * len(vbits)), fontsize=8.5, title_fontsize=8.5,
               title="markers: measured with the encoders; lines: closed forms;\n"
                     "dotted verticals: the smallest format changes (measured)")
    fig.suptitle("Sparse format size vs sparsity, uniform random masks", fontsize=12)
    return fig
