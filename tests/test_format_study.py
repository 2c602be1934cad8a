"""The format-crossover study on a small tensor: schema, exact facts, crossovers, outputs."""

from __future__ import annotations

import numpy as np
import pytest

from sparsesim.formats.study import (
    COLUMNS,
    crossover_study,
    crossovers,
    default_sparsities,
    plot_crossover,
    render_table,
    study_shape,
)

SPARSITIES = [0.0, 0.5, 0.8, 0.9, 0.97, 0.99, 0.999]


@pytest.fixture(scope="module")
def study():
    return crossover_study(n_elements=10_000, sparsities=SPARSITIES, seed=3,
                           nm_points=((2, 4), (1, 8)))


def test_schema_and_grid(study):
    assert tuple(study.columns) == COLUMNS
    uniform = study[study["mask"] == "uniform"]
    assert len(uniform) == len(SPARSITIES) * 7 * 2
    assert len(study[study["mask"] == "n:m"]) == 2 * 2
    assert set(study["value_bits"]) == {8, 16}
    assert (study["total_bits"] == study["data_bits"] + study["meta_bits"]).all()
    assert np.allclose(study["bits_per_element"], study["total_bits"] / 10_000)
    # exact non-zero counts: the realized sparsity is the asked one
    assert np.allclose(sorted(set(uniform["sparsity"].round(9))), SPARSITIES)
    assert (study["tensor_shape"] == "100x100").all()


def test_measured_sizes_follow_the_definitions(study):
    u = study[study["mask"] == "uniform"]
    for r in u.itertuples():
        n, d = r.value_bits, r.density
        if r.format == "dense":
            assert r.bits_per_element == n
        elif r.format == "bitmap":
            assert r.bits_per_element == pytest.approx(n * d + 1)
        elif r.format in ("coo", "coo_offset"):  # 100 x 100: 7 + 7 bits, or 14 bits flat
            assert r.bits_per_element == pytest.approx((n + 14) * d)
        if r.format != "rle":  # all but run-length are exact at the realized density
            assert r.bits_per_element == pytest.approx(r.closed_form_bits_per_element)
    assert "runs=4" in u[u["format"] == "rle"]["field_bits"].iloc[0]
    nm = study[study["mask"] == "n:m"]
    for r in nm.itertuples():  # K = 100: 2:4 keeps 50 of 100, 1:8 keeps 12 + min(1, 4) = 13
        want = ((r.value_bits + 2) * 50 / 100 if r.spec == "nm:n=2,m=4"
                else (r.value_bits + 3) * 13 / 100)
        assert r.bits_per_element == pytest.approx(want)


def test_crossovers(study):
    cross = crossovers(study)
    assert {"value_bits", "kind", "from_format", "to_format", "measured_sparsity",
            "closed_form_sparsity"} <= set(cross.columns)
    for n in (8, 16):
        winners = cross[(cross["value_bits"] == n) & (cross["kind"] == "winner")]
        first = winners.iloc[0]
        # dense and bitmap are linear in density, so the interpolated crossing is exact: 1/n
        assert (first.from_format, first.to_format) == ("dense", "bitmap")
        assert first.measured_sparsity == pytest.approx(1 / n)
        assert first.closed_form_sparsity == pytest.approx(1 / n, abs=1e-9)
        # the sequence chains: each change starts from the previous winner
        assert (winners["from_format"].iloc[1:].to_numpy()
                == winners["to_format"].iloc[:-1].to_numpy()).all()
        rule = cross[(cross["value_bits"] == n) & (cross["kind"] == "rule")
                     & (cross["to_format"] == "coo")].iloc[0]
        assert rule.closed_form_sparsity == pytest.approx(1 - 1 / 14)  # d < 1/b, b = 14
        assert rule.measured_sparsity == pytest.approx(1 - 1 / 14, abs=1e-9)
    measured_vs_closed = (cross["measured_sparsity"] - cross["closed_form_sparsity"]).abs()
    assert (measured_vs_closed < 0.03).all()


def test_render_table(study):
    text = render_table(study)
    assert "100x100" in text and "bits per element" in text
    assert "8-bit values" in text and "16-bit values" in text
    assert "Crossovers" in text and "closed form %" in text
    for spec in ("dense", "bitmap", "rle:run_bits=4", "coo_offset", "csr", "csc"):
        assert spec in text
    assert "nm:n=2,m=4" in text


def test_plot(study, tmp_path):
    fig = plot_crossover(study)
    axes = fig.get_axes()
    assert len(axes) == 2
    for ax in axes:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert "sparsity" in ax.get_xlabel()
    assert "bits per element" in axes[0].get_ylabel()
    fig.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_grid_and_shape():
    grid = default_sparsities()
    assert grid[0] == 0.0 and grid[-1] == pytest.approx(0.9999) and len(grid) >= 40
    assert (np.diff(grid) > 0).all()
    assert study_shape(1_000_000) == (1000, 1000)
    assert study_shape(7) == (1, 7)
    assert study_shape(12) == (3, 4)
