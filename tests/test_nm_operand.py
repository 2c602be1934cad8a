"""The N:M unit on activations and on both operands (``pe.nm_operand``): the fast model
against the cycle-stepped reference, the conv and attention rules, energy and the CLI."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsesim.api import simulate
from sparsesim.arch.array import ArrayConfig
from sparsesim.arch.config import Arch
from sparsesim.arch.pe import PeConfig
from sparsesim.errors import SparsesimError
from sparsesim.mapping.dataflows import plan
from sparsesim.mapping.gemm import Gemm, GemmOperands, OperandKind
from sparsesim.mapping.lower import gemm_operands
from sparsesim.pe.kinds import compute
from sparsesim.pe.reference import run_nm_reference
from sparsesim.sparsity.masks import LayerMasks
from sparsesim.workload.layers import Conv2d

DATAFLOWS = ["os", "ws", "is"]


def arch(rows, cols, dataflow, **pe):
    return Arch(array=ArrayConfig(rows, cols, dataflow), pe=PeConfig(kind="nm", **pe))


def _nm_keep(draw, k, cols, n, m):
    """[k, cols] bool: at most n kept per group of m along k (drawn counts, drawn places)."""
    keep = np.zeros((k, cols), dtype=bool)
    for col in range(cols):
        for g0 in range(0, k, m):
            size = min(m, k - g0)
            chosen = draw(st.permutations(list(range(size))))[: draw(st.integers(0, min(n, size)))]
            keep[[g0 + c for c in chosen], col] = True
    return keep


@st.composite
def nm_case(draw):
    m_grp = draw(st.integers(1, 6))
    n_keep = draw(st.integers(1, m_grp))
    m, k, n = draw(st.integers(1, 6)), draw(st.integers(1, 13)), draw(st.integers(1, 6))
    a = draw(arrays(np.int64, (m, k), elements=st.integers(1, 3)))
    w = draw(arrays(np.int64, (k, n), elements=st.integers(-3, -1)))
    operand = draw(st.sampled_from(["A", "W", "both"]))
    if operand in ("W", "both"):
        w = w * _nm_keep(draw, k, n, n_keep, m_grp)
    if operand in ("A", "both"):
        a = a * _nm_keep(draw, k, m, n_keep, m_grp).T
    if operand == "W":  # the side the unit ignores: any zeros
        a = a * draw(arrays(np.bool_, (m, k)))
    if operand == "A":
        w = w * draw(arrays(np.bool_, (k, n)))
    return a, w, n_keep, m_grp, operand, draw(st.integers(1, 4)), draw(st.integers(1, 4))


@settings(max_examples=150, deadline=None)
@given(nm_case(), st.sampled_from(DATAFLOWS))
# joint N:M with an all-non-zero A mask: its metadata still gates the weight's zero slot (found
# when dense operands learnt to run densely on N:M arrays)
@example((np.array([[1]]), np.array([[0]]), 1, 1, "both", 1, 1), "os")
def test_nm_operand_equals_reference(case, dataflow):
    a, w, n, m, operand, rows, cols = case
    ref = run_nm_reference(a, w, dataflow, rows, cols, n, m, operand=operand)
    np.testing.assert_array_equal(ref.output, a @ w)
    ops = GemmOperands(Gemm("l", "g", *a.shape, w.shape[1]), a != 0, w != 0)
    got = compute(ops, arch(rows, cols, dataflow, n=n, m=m, nm_operand=operand))
    assert got.compute_cycles == ref.cycles
    assert (got.issued_macs, got.gated_macs) == (ref.issued_macs, ref.gated_macs)


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_activation_2_4_is_the_dense_half_k_gemm(dataflow):
    # By hand: A 2:4 along K, dense weights → the dense cycles of the K/2 GEMM, M·K/2·N MACs.
    rng = np.random.default_rng(1)
    m, k, n = 96, 256, 200
    a = np.zeros((m, k), bool)
    for row in range(m):
        for g0 in range(0, k, 4):
            a[row, g0 + rng.choice(4, 2, replace=False)] = True
    ops = GemmOperands(Gemm("l", "g", m, k, n), a, None)
    got = compute(ops, arch(32, 32, dataflow, nm_operand="A"))
    assert got.compute_cycles == plan(Gemm("l", "g", m, k // 2, n), dataflow, 32, 32).compute_cycles
    assert (got.issued_macs, got.gated_macs) == (m * k // 2 * n, 0)


def test_non_conformant_activations_name_the_row_and_layer():
    a = np.ones((3, 8), bool)
    a[1, 4:7] = False  # row 1, group 1 keeps 1; row 0 group 0 keeps 4
    with pytest.raises(SparsesimError) as err:
        compute(GemmOperands(Gemm("fc1", "fc", 3, 8, 2), a, None), arch(4, 4, "os", nm_operand="A"))
    assert err.value.layer == "fc1" and err.value.field == "A"
    assert "'A' is not 2:4-conformant along K: group rows 0..3 of column 0 holds 4" in str(err.value)
    assert "act_prune = nm" in str(err.value)


def test_weights_only_ignores_activations_and_activations_only_ignores_weights():
    rng = np.random.default_rng(2)
    a = rng.random((5, 12)) < 0.9  # not N:M
    w = rng.random((12, 7)) < 0.9
    dense = plan(Gemm("l", "g", 5, 12, 7), "os", 4, 4).compute_cycles
    # Weights not N:M with W: an error; with A and dense-looking A: also an error; neither
    # silently falls back, and the side not named is never checked.
    with pytest.raises(SparsesimError, match="'W' is not 2:4"):
        compute(GemmOperands(Gemm("l", "g", 5, 12, 7), a, w), arch(4, 4, "os"))
    with pytest.raises(SparsesimError, match="'A' is not 2:4"):
        compute(GemmOperands(Gemm("l", "g", 5, 12, 7), a, w), arch(4, 4, "os", nm_operand="A"))
    # No activation mask (the first input): the A-side unit runs the GEMM uncompressed.
    got = compute(GemmOperands(Gemm("l", "g", 5, 12, 7), None, w), arch(4, 4, "os", nm_operand="A"))
    assert got.compute_cycles == dense


def test_attention_scores_run_uncompressed_on_the_activation_side():
    # P·V: both operands activations; P's causal mask is not N:M pruning.
    p = np.tril(np.ones((8, 8), bool))
    g = Gemm("att", "pv", 8, 8, 4, w_kind=OperandKind.ACTIVATION)
    got = compute(GemmOperands(g, p, None), arch(4, 4, "os", nm_operand="A"))
    assert got.compute_cycles == plan(g, "os", 4, 4).compute_cycles


def _channel_nm_inputs(conv, rng):
    x = np.zeros((conv.n, conv.c, conv.h, conv.w), bool)
    for g0 in range(0, conv.c, 4):
        pick = rng.permuted(np.tile([True, True, False, False], (conv.h * conv.w, 1)), axis=1)
        x[:, g0:g0 + 4] = pick.T.reshape(4, conv.h, conv.w)[None]
    return x


def test_conv_1x1_channel_nm_compresses_k_and_3x3_is_refused():
    rng = np.random.default_rng(3)
    pw = Conv2d("pw", c=16, h=6, w=6, m=8, r=1, s=1)
    [ops] = gemm_operands(pw, LayerMasks({}, _channel_nm_inputs(pw, rng)))
    got = compute(ops, arch(4, 4, "ws", nm_operand="A"))
    assert got.compute_cycles == plan(Gemm("pw", "conv", 36, 8, 8), "ws", 4, 4).compute_cycles
    k3 = Conv2d("k3", c=16, h=6, w=6, m=8, r=3, s=3, padding=1)
    [ops] = gemm_operands(k3, LayerMasks({}, _channel_nm_inputs(k3, rng)))
    with pytest.raises(SparsesimError) as err:
        compute(ops, arch(4, 4, "ws", nm_operand="A"))
    assert err.value.layer == "k3" and err.value.field == "A"
    assert "K running over (c/groups, r, s) = (16, 3, 3)" in str(err.value)
    assert "only under a 1×1 kernel" in str(err.value)


def test_joint_gates_mismatches_and_energy_orders():
    # One 2:4 group, by hand: W keeps k = {0, 1}, A keeps k = {1, 2}; one match (k = 1).
    w = np.array([[1], [1], [0], [0]], bool)
    a = np.array([[0, 1, 1, 0]], bool)
    both = compute(GemmOperands(Gemm("l", "g", 1, 4, 1), a, w), arch(2, 2, "os", nm_operand="both"))
    wonly = compute(GemmOperands(Gemm("l", "g", 1, 4, 1), a, w), arch(2, 2, "os"))
    assert both.compute_cycles == wonly.compute_cycles
    assert (both.issued_macs, both.gated_macs) == (1, 1)
    assert (wonly.issued_macs, wonly.gated_macs) == (2, 0)


def test_instances_each_compress_by_their_own_activations():
    # Two instances (e.g. conv groups) with different A masks: the sum of their references.
    rng = np.random.default_rng(4)
    a = np.zeros((2, 5, 8), np.int64)
    for i in range(2):
        for row in range(5):
            for g0 in (0, 4):
                a[i, row, g0 + rng.choice(4, 2 - i, replace=False)] = 1
    w = (rng.random((8, 3)) < 0.5).astype(np.int64)
    ops = GemmOperands(Gemm("l", "g", 5, 8, 3, count=2), a != 0, w != 0)
    got = compute(ops, arch(2, 2, "is", nm_operand="A"))
    refs = [run_nm_reference(a[i], w, "is", 2, 2, 2, 4, operand="A") for i in range(2)]
    assert got.compute_cycles == sum(r.cycles for r in refs)
    assert got.issued_macs == sum(r.issued_macs for r in refs) == 2 * 5 * 4 * 3


def test_backward_activations_not_nm_along_their_k_run_uncompressed():
    # A weight gradient reads Aᵀ, N:M along the other axis: the unit runs it dense, no error.
    a = np.ones((6, 8), bool)
    g = Gemm("l", "g.dw", 6, 8, 3, w_kind=OperandKind.ACTIVATION, phase="backward")
    got = compute(GemmOperands(g, a, None), arch(4, 4, "os", nm_operand="A"))
    assert got.compute_cycles == plan(g, "os", 4, 4).compute_cycles


def _workload(attention):
    from sparsesim.workload.layers import Attention, Linear
    from sparsesim.workload.network import Workload
    layers = (Linear("fc1", in_features=64, out_features=48, tokens=16),
              Linear("fc2", in_features=48, out_features=32, tokens=16))
    if attention:
        layers = (Attention("att", b=1, l=16, e=64, heads=2),) + layers
    return Workload("t", layers)


def _rows(nm_operand, attention=True, first_dense=True):
    from sparsesim.sparsity.masks import SparsityModel
    ar = Arch(array=ArrayConfig(8, 8, "os"), pe=PeConfig(kind="nm", nm_operand=nm_operand))
    model = SparsityModel(weight_nm=(2, 4), act_prune="nm", act_nm=(2, 4),
                          dense_first_input=first_dense)
    return simulate(_workload(attention), ar, sparsity=model).df


@pytest.mark.parametrize("nm_operand, compressed", [
    ("W", {"att.q", "att.k", "att.v", "att.o", "fc1.fc", "fc2.fc"}),
    # the attention is the first layer: its input is dense, no metadata; Q, P, O's input never
    ("A", {"fc1.fc", "fc2.fc"}),
    ("both", {"att.q", "att.k", "att.v", "att.o", "fc1.fc", "fc2.fc"}),
])
def test_a_network_compresses_exactly_the_gemms_with_metadata(nm_operand, compressed):
    df = _rows(nm_operand)
    gemms = df[df["kind"] == "gemm"]
    for row in gemms.itertuples():
        name = f"{row.layer}.{row.gemm}"
        k = row.K // 2 if name in compressed else row.K  # K = 64, 48, 32, 8, 16: 2:4 halves
        want = plan(Gemm("l", "g", row.M, k, row.N, count=row.count), "os", 8, 8).compute_cycles
        assert row.compute_cycles == want, name
    online = df[df["kind"] == "online"]  # the selection unit stays charged, the same in every mode
    assert list(online["layer"]) == ["fc1", "fc2"]
    pd_equal = _rows("W")[lambda d: d["kind"] == "online"]
    def dynamic(d):  # the arch's leakage differs (joint N:M PEs are larger): dynamic is equal
        return d.assign(dynamic_pj=d["energy_pj"] - d["energy_static_pj"])[
            ["cycles", "dynamic_pj"]].values.tolist()

    assert dynamic(online) == dynamic(pd_equal)


def test_energy_issued_at_mac_gated_at_gated_mac_and_ordered():
    from sparsesim.arch.energy import energy_table
    rows = {op: _rows(op, attention=False, first_dense=False) for op in ("W", "A", "both")}
    table = energy_table(Arch())
    mac, gated = table.mac(8, 8), table.gated_mac(8, 8)
    slots = 16 * 32 * 48 + 16 * 24 * 32  # M·K′·N of fc1 and fc2
    for op, df in rows.items():
        g = df[df["kind"] == "gemm"]
        issued = slots if op != "both" else int(g["effectual_macs"].sum())
        assert g["energy_mac_pj"].sum() == pytest.approx(issued * mac)
        assert g["energy_gated_mac_pj"].sum() == pytest.approx((slots - issued) * gated)
    total = {op: df["energy_pj"].sum() for op, df in rows.items()}
    dense = simulate(_workload(False), Arch(array=ArrayConfig(8, 8, "os")),
                     sparsity=rows_model()).df["energy_pj"].sum()
    # the same slots and traffic: A = W; joint gates the mismatches; all below dense PEs
    assert total["A"] == pytest.approx(total["W"], rel=1e-12)
    assert total["both"] < total["W"] < dense


def rows_model():
    from sparsesim.sparsity.masks import SparsityModel
    return SparsityModel(weight_nm=(2, 4), act_prune="nm", act_nm=(2, 4), dense_first_input=False)


def test_activation_side_without_any_pruned_input_is_refused():
    from sparsesim.sparsity.masks import SparsityModel
    ar = Arch(array=ArrayConfig(8, 8, "os"), pe=PeConfig(kind="nm", nm_operand="both"))
    with pytest.raises(SparsesimError) as err:
        simulate(_workload(False), ar, sparsity=SparsityModel(weight_nm=(2, 4)))
    assert err.value.field == "pe.nm_operand" and "no layer's input is pruned" in str(err.value)


def test_cli_bert_activation_nm_moves_compute_by_k_prime(tmp_path):
    import subprocess
    import sys

    import pandas as pd
    bad = subprocess.run([sys.executable, "-m", "sparsesim.cli", "run", "--set", "pe.kind=skip",
                          "--set", "pe.nm_operand=A"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "pe.nm_operand" in bad.stderr
    out = tmp_path / "a.csv"
    proc = subprocess.run([sys.executable, "-m", "sparsesim.cli", "run", "-w", "bert_base_seq128",
                           "--set", "pe.kind=nm", "--set", "pe.nm_operand=A", "--act-prune", "nm",
                           "--act-nm", "2:4", "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "2:4 PEs (N:M activations)" in proc.stdout
    df = pd.read_csv(out)
    gemms = df[df["kind"] == "gemm"]
    for row in gemms.itertuples():  # K′ = K/2 where the online unit pruned the GEMM's input
        pruned = row.gemm in ("q", "k", "v", "fc") and row.layer != "encoder.0.attention"
        k = row.K // 2 if pruned else row.K
        want = plan(Gemm("l", "g", row.M, k, row.N, count=row.count), "os", 32, 32)
        assert row.compute_cycles == want.compute_cycles, (row.layer, row.gemm)
    assert (df["kind"] == "online").sum() == 35  # every layer's input but the first
