"""The one N:M rule and the one keep-count rule (sparsesim.rules), against brute force.

Every property is checked against an independent count written here with plain loops; the
half-of-5 example is run through every path that keeps something, which must agree.
"""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.cli import main as cli_main
from sparsesim.engine.dynamic import _shape_input
from sparsesim.engine.training import GradientModel
from sparsesim.errors import SparsesimError
from sparsesim.formats import NM
from sparsesim.mapping.gemm import Gemm, GemmOperands
from sparsesim.pe.kinds import compute
from sparsesim.pe.reference import run_nm_reference
from sparsesim.prune import ActPrune, PruneSpec, keep_masks, prune_heads, prune_kv, prune_tokens
from sparsesim.rules.keep import keep_count, prune_count
from sparsesim.rules.nm import compressed_k, conformant_mask, first_violation, parse_nm
from sparsesim.sparsity.masks import SparsityModel, exact_density_mask
from sparsesim.workload.layers import Attention, Linear
from sparsesim.workload.network import Workload, load_workload


# --- brute force -------------------------------------------------------------------------------

def brute_groups(k, m, tile_rows=None):
    """[(first, last)] row ranges of the N:M groups along K, from the definition."""
    tile = max(k, 1) if tile_rows is None else tile_rows
    out = []
    for t0 in range(0, k, tile):
        t1 = min(k, t0 + tile)
        out += [(g0, min(t1, g0 + m) - 1) for g0 in range(t0, t1, m)]
    return out


def brute_first_violation(mask2, n, m, tile_rows=None):
    k, cols = mask2.shape
    bad = []
    for first, last in brute_groups(k, m, tile_rows):
        for col in range(cols):
            count = sum(bool(mask2[r, col]) for r in range(first, last + 1))
            if count > n:
                bad.append((first, col, last, count))
    return min(bad) if bad else None


@given(st.integers(0, 200), st.integers(1, 16), st.data())
def test_compressed_k_counts_the_slots_of_every_group(k, m, data):
    n = data.draw(st.integers(1, m))
    slots = sum(min(n, last - first + 1) for first, last in brute_groups(k, m))
    assert compressed_k(k, n, m) == slots
    assert compressed_k(np.array([k]), n, m).tolist() == [slots]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 6), st.integers(1, 5), st.integers(1, 9),
       st.integers(0, 2**31), st.booleans())
def test_reference_and_format_hold_compressed_k_slots(k, cols, m, tile, seed, tiled):
    """The cycle-stepped reference builds its slots group by group, the format stores them:
    both hold K′ per column."""
    n = 1 + seed % m
    rng = np.random.default_rng(seed)
    w = conformant_mask((k, cols), n, m, (0,), rng=rng) * rng.integers(1, 5, (k, cols))
    ref = run_nm_reference(np.ones((2, k)), w, "os", 2, 2, n, m)
    np.testing.assert_array_equal(ref.output, np.ones((2, k)) @ w)
    data_bits, _ = NM(n, m).bits(w != 0, value_bits=1)
    assert data_bits == compressed_k(k, n, m) * cols


masks_2d = st.integers(1, 24).flatmap(lambda k: st.integers(1, 6).flatmap(
    lambda c: st.lists(st.booleans(), min_size=k * c, max_size=k * c).map(
        lambda v: np.array(v, dtype=bool).reshape(k, c))))


@settings(max_examples=150, deadline=None)
@given(masks_2d, st.integers(1, 6), st.data())
def test_first_violation_is_the_first_group_over_n(mask, m, data):
    n = data.draw(st.integers(1, m))
    tile_rows = data.draw(st.none() | st.integers(1, mask.shape[0]))
    got = first_violation(mask, n, m, tile_rows=tile_rows)
    want = brute_first_violation(mask, n, m, tile_rows)
    if want is None:
        assert got is None
    else:
        first, col, last, count = want
        assert (got.first, got.column, got.last, got.count) == (first, col, last, count)
        tile = mask.shape[0] if tile_rows is None else tile_rows
        assert got.group == (first % tile) // m


def test_first_violation_reads_values_and_any_k_axis():
    w = np.zeros((3, 8))
    w[1, 4:7] = [0.5, -2, 3]  # column 1, group k 4..7: 3 non-zeros
    bad = first_violation(w, 2, 4, k_axis=1)
    assert (bad.first, bad.last, bad.column, bad.count) == (4, 7, 1, 3)
    assert first_violation(w, 3, 4, k_axis=1) is None


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 7), min_size=1, max_size=4), st.integers(1, 6), st.data())
def test_random_conformant_masks_keep_min_n_g_in_every_group(shape, m, data):
    n = data.draw(st.integers(0, m))
    k_axes = data.draw(st.lists(st.sampled_from(range(len(shape))), min_size=1, unique=True))
    mask = conformant_mask(tuple(shape), n, m, tuple(k_axes),
                           rng=np.random.default_rng(data.draw(st.integers(0, 2**31))))
    assert mask.shape == tuple(shape)
    other = [i for i in range(len(shape)) if i not in k_axes]
    flat = mask.transpose(other + k_axes).reshape(-1, int(np.prod([shape[i] for i in k_axes])))
    for row in flat:
        for first, last in brute_groups(row.size, m):
            assert row[first:last + 1].sum() == min(n, last - first + 1)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 5), st.integers(1, 14), st.integers(1, 6), st.data())
def test_by_score_masks_keep_the_highest_of_each_group(rows, k, m, data):
    n = data.draw(st.integers(1, m))
    scores = np.array(data.draw(st.lists(st.integers(0, 3), min_size=rows * k,
                                         max_size=rows * k)), float).reshape(rows, k)
    got = conformant_mask((rows, k), n, m, (1,), scores=scores)
    want = np.ones((rows, k), bool)
    for r in range(rows):
        for first, last in brute_groups(k, m):
            idx = sorted(range(first, last + 1), key=lambda i: (scores[r, i], i))
            for i in idx[: max(0, len(idx) - n)]:  # lowest first; ties: lower index goes
                want[r, i] = False
    np.testing.assert_array_equal(got, want)


def test_one_error_wording_from_the_pe_the_format_and_the_reference():
    w = np.zeros((8, 3), bool)
    w[0:2, :] = True
    w[4:7, 1] = True  # column 1, rows 4..7: 3 non-zeros
    core = "is not 2:4-conformant along K: group rows 4..7 of column 1 holds 3 non-zeros"
    arch = with_overrides(load_arch("default"), {"pe.kind": "nm"})
    errors = []
    for call in (lambda: compute(GemmOperands(Gemm("fc", "fc", 2, 8, 3), None, w), arch),
                 lambda: NM(2, 4).encode(w.astype(np.int8), name="W"),
                 lambda: run_nm_reference(np.ones((2, 8)), w, "os", 2, 2, 2, 4)):
        with pytest.raises(SparsesimError) as err:
            call()
        errors.append(err.value)
    assert all(core in e.message and "tensor 'W'" in e.message for e in errors)
    assert errors[0].layer == "fc" and errors[0].field == "W"


# --- the parser --------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "want"), [("2:4", (2, 4)), (" 1 : 8 ", (1, 8)), ("4:4", (4, 4))])
def test_parse_nm(text, want):
    assert parse_nm(text) == want


@pytest.mark.parametrize(("text", "needle"), [
    ("2-4", "expected N:M such as 2:4"), ("2:", "expected N:M"), (":4", "expected N:M"),
    ("a:b", "expected N:M"), ("2:4:8", "expected N:M"), ("", "expected N:M"),
    ("²:4", "expected N:M"), ("4:2", "0 < N <= M, got 4:2"), ("0:4", "0 < N <= M, got 0:4")])
def test_parse_nm_errors_name_the_field(text, needle):
    with pytest.raises(SparsesimError) as err:
        parse_nm(text, field="act_nm")
    assert needle in err.value.message and err.value.field == "act_nm"


def test_every_nm_text_goes_through_the_one_parser(tmp_path, capsys):
    with pytest.raises(SparsesimError, match="expected N:M such as 2:4, got 'x'"):
        ActPrune.parse("nm:x")
    topo = tmp_path / "t.csv"
    topo.write_text("Layer, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
                    "Num Filter, Strides, Sparsity,\nc1, 8, 8, 3, 3, 4, 8, 1, 2-4,\n")
    with pytest.raises(SparsesimError) as err:
        load_workload(str(topo))
    assert err.value.layer == "c1" and err.value.field == "sparsity"
    assert err.value.file and "expected N:M such as 2:4" in err.value.message
    with pytest.raises(SystemExit):
        cli_main(["run", "--weight-nm", "4:2", "-o", str(tmp_path / "x.csv")])
    assert "must be N:M with 0 < N <= M, got 4:2" in capsys.readouterr().err


# --- the keep-count rule -----------------------------------------------------------------------

@given(st.integers(0, 10_000), st.floats(0, 1))
def test_keep_count_is_a_nearest_integer_and_complements_the_prune_count(total, density):
    kept = keep_count(total, density=density)
    distance = abs(kept - density * total)
    assert distance <= 0.5 + 1e-9
    if total <= 200:  # brute force: no count in [0, total] is nearer to density · total
        assert min(abs(k - density * total) for k in range(total + 1)) >= distance - 1e-9
    s = 1.0 - density
    assert keep_count(total, sparsity=s) + prune_count(total, s) == total


@given(st.integers(0, 500), st.floats(0, 1), st.floats(0, 1))
def test_keep_count_grows_with_the_density(total, a, b):
    lo, hi = sorted((a, b))
    assert keep_count(total, density=lo) <= keep_count(total, density=hi)


def test_prune_count_is_torch_nn_utils_prune_count():
    prune = pytest.importorskip("torch.nn.utils.prune")
    for total in range(0, 40):
        for amount in np.linspace(0, 1, 41)[:-1]:
            assert prune_count(total, float(amount)) == prune._compute_nparams_toprune(
                float(amount), total), (total, amount)


def test_at_least_is_explicit():
    assert keep_count(9, density=0.01) == 0 and keep_count(9, density=0.01, at_least=1) == 1
    assert keep_count(0, density=0.5, at_least=1) == 0  # nothing to keep
    with pytest.raises(SparsesimError):
        keep_count(0.5, density=0.5)  # the arguments of the old prune_count(amount, n)
    with pytest.raises(ValueError):
        keep_count(5, density=0.5, sparsity=0.5)


def test_half_of_five_keeps_three_on_every_path():
    """masks (statistical model), structure (front-end), dynamic (per input), the seeded
    masks, top-k and unstructured pruning: half of 5 is 3 everywhere (2.5 removed → 2)."""
    att = Attention("a", l=5, e=20, heads=5)
    shaped = SparsityModel(token_keep=0.5, head_keep=0.5, kv_keep=0.5).shape(att)
    assert (shaped.l, shaped.heads_kept, shaped.kv_len) == (3, 3, 1)  # kv: half of 3 → 1
    shaped = SparsityModel(kv_keep=0.5).shape(att)
    assert shaped.kv_len == 3

    wl = Workload("w", (att,))
    scores = {t: np.ones((20, 20)) for t in "qkvo"}
    heads, _ = prune_heads(wl, {"a": scores}, 0.5)
    kv, _ = prune_kv(wl, 0.5)
    assert heads.layers[0].heads_kept == 3 and kv.layers[0].kv_len == 3
    two = Workload("w", (att, replace(att, name="b")))
    tokens, _ = prune_tokens(two, 0.5)  # dropped after the layer that scores them
    ratio, _ = prune_tokens(two, 0.0, keep_ratios={"a": 0.5})
    assert tokens.layers[0].l == 5 and tokens.layers[1].l == 3 and ratio.layers[1].l == 3

    fc = Linear("fc", in_features=4, out_features=5, tokens=5)
    [s_att, s_fc] = _shape_input([(att, None), (fc, None)],
                                 {"a": {"token_keep": 0.5, "head_keep": 0.5},
                                  "fc": {"channel_keep": 0.5}}, {}, np.random.default_rng(0))
    assert (s_att.layer.l, s_att.layer.heads_kept) == (3, 3)
    assert s_fc.layer.tokens == 3 and s_fc.layer.out_features == 3

    rng = np.random.default_rng(0)
    assert exact_density_mask((5,), 0.5, rng).sum() == 3
    row = GradientModel(density=0.5, structure="row").draw(Gemm("l", "g", 4, 2, 5), 0)
    assert (row.sum(axis=2) == 3).all()
    topk = SparsityModel(act_density=0.5, act_prune="topk").masks(
        Linear("fc", in_features=5, out_features=2, tokens=4), 1).inputs
    assert (topk.sum(axis=1) == 3).all()
    [keep] = keep_masks([(Linear("fc", 5, 1), "w", np.arange(5.0)[None])],
                        PruneSpec(sparsity=0.5))
    assert keep.sum() == 3
