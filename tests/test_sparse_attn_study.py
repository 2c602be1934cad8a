"""The sparse-attention study (analysis/sparse_attn_study.py) on small blocks: the CSV it
writes checked against closed forms derived here by hand — PV's effectual MACs are the kept
probabilities times the head width, QKᵀ's are every score (all are needed to choose the top-k;
causal: the visible ones), the skipping PEs' PV folds take k steps plus fill/drain."""

import math

import pandas as pd
import pytest

from analysis import sparse_attn_study as study
from sparsesim.arch.config import load_arch
from sparsesim.arch.energy import energy_table
from sparsesim.energy import QUANTUM_PJ
from sparsesim.workload.layers import Attention, Linear
from sparsesim.workload.network import Workload

L, HEADS, D = 32, 2, 32  # one 32×32 fold per head on the default 32×32 array
E = HEADS * D
KS = (4, 8, None)
FILL = 32 + 32 - 2  # os fold: T + rows + cols − 2


def block(causal: bool) -> Workload:
    return Workload("tiny", (Attention("att", l=L, e=E, heads=HEADS, causal=causal),
                             Linear("fc", E, 2 * E, tokens=L)))


@pytest.fixture(scope="module", params=[False, True], ids=["bidirectional", "causal"])
def written(request, tmp_path_factory):
    causal = request.param
    out = tmp_path_factory.mktemp("study") / "s"
    study.write(out, block(causal), k_values=KS, title="test")
    assert out.with_suffix(".png").stat().st_size > 0
    return causal, pd.read_csv(out.with_suffix(".csv"))


def kept_per_head(k, causal):
    """Σ over the l query rows of the keys kept: min(k, visible); visible = i + 1 if causal."""
    k = L if k is None else k
    if not causal:
        return L * k
    return sum(min(k, i + 1) for i in range(L))


def rows_for(df, k):
    return df[df["top_k"].isna()] if k is None else df[df["top_k"] == k]


def test_one_row_per_config_and_k(written):
    _, df = written
    assert len(df) == len(study.CONFIGS) * len(KS)
    assert set(df["config"]) == set(study.CONFIGS)
    assert sorted(df["keys_kept"].unique()) == [4, 8, L]


@pytest.mark.parametrize("k", KS)
def test_effectual_macs_closed_form(written, k):
    causal, df = written
    sub = rows_for(df, k)
    pv = HEADS * D * kept_per_head(k, causal)
    # causal: the closed form is the triangle l(l+1)/2 … at k = all
    if causal and k is None:
        assert pv == HEADS * D * L * (L + 1) // 2
    assert (sub["pv_effectual_macs"] == pv).all()
    qk = HEADS * D * (L * (L + 1) // 2 if causal else L * L)  # every needed score
    assert (sub["qk_effectual_macs"] == qk).all()
    assert (sub["qk_dense_macs"] == HEADS * L * L * D).all()
    assert (sub["pv_dense_macs"] == HEADS * L * L * D).all()
    assert (sub["o_effectual_macs"] == L * E * E).all() and (sub["o_dense_macs"] == L * E * E).all()


@pytest.mark.parametrize("k", KS)
def test_pv_compute_cycles_closed_form(written, k):
    causal, df = written
    sub = rows_for(df, k).set_index("config")
    dense = HEADS * (L + FILL)  # one fold per head, the full key stream
    assert sub.loc["dense", "pv_compute_cycles"] == dense
    assert sub.loc["gate", "pv_compute_cycles"] == dense
    # skip (sync = pe): each PE's row keeps min(k, visible) keys; the fold waits for the
    # slowest PE, the last row (it sees every key): min(k, l) steps.
    kept = L if k is None else min(k, L)
    for config in ("skip", "skip + P compressed"):
        assert sub.loc[config, "pv_compute_cycles"] == HEADS * (kept + FILL)


def test_dense_and_gating_pes_gain_no_cycles_and_pay_the_unit(written):
    _, df = written
    for config in ("dense", "gate"):
        sub = df[df["config"] == config]
        full = sub[sub["top_k"].isna()].iloc[0]
        assert full["online_cycles"] == 0 and full["online_energy_pj"] == 0
        for _, row in sub[sub["top_k"].notna()].iterrows():
            assert row["pv_cycles"] == full["pv_cycles"]
            assert row["qk_cycles"] == full["qk_cycles"]
            assert row["online_cycles"] > 0 and row["online_energy_pj"] > 0
            assert row["block_cycles"] == full["block_cycles"] + row["online_cycles"]
            assert row["dram_bytes"] == full["dram_bytes"]


@pytest.mark.parametrize("k", [4, 8])
def test_gated_energy_is_the_dropped_products(written, k):
    causal, df = written
    row = rows_for(df, k).set_index("config").loc["gate"]
    arch = load_arch("default")
    per = energy_table(arch).gated_mac(arch.precision.a_bits, arch.precision.w_bits)
    # only P has zeros; gate (operand both) gates every PV product whose P is zero, causal
    # ones included (P AND causal is PV's A)
    dropped = HEADS * (L * L - kept_per_head(k, causal)) * D
    # (the PV row's energy components are whole multiples of QUANTUM_PJ)
    assert row["energy_gated_mac_pj"] == pytest.approx(dropped * per, abs=QUANTUM_PJ)


def test_compressed_p_reads_fewer_bytes_only_when_p_is_sparse(written):
    causal, df = written
    for k in KS:
        sub = rows_for(df, k).set_index("config")
        plain, packed = sub.loc["skip"], sub.loc["skip + P compressed"]
        if k is None and not causal:  # a causal P is half zeros even with every key kept
            assert packed["dram_bytes"] == plain["dram_bytes"]
        else:
            assert packed["pv_dram_read_bytes_p"] < plain["pv_dram_read_bytes_p"]
        # P stored dense is l·kv int8 bytes per head, rounded to whole 64 B bursts
        assert plain["pv_dram_read_bytes_p"] >= HEADS * L * L
        assert plain["pv_dram_read_bytes_p"] == HEADS * math.ceil(L * L / 64) * 64
