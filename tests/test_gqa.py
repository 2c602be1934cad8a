"""GQA/MQA: score GEMMs stacked per K/V head, K/V read once per group, KV-cache appends, and
decode over several tokens (issue 15 item 6). Expected values are derived by hand here."""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsesim import simulate
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.errors import SparsesimError
from sparsesim.mapping.lower import gemm_operands, lower, stack_query_rows
from sparsesim.pe.kinds import compute
from sparsesim.workload.decode import decode_steps
from sparsesim.workload.layers import Attention, Linear
from sparsesim.workload.network import Workload, load_workload, workload_from_dict


def arch(**over):
    return with_overrides(load_arch("default"), over)


def shapes(layer):
    return {g.name: (g.m, g.k, g.n, g.count) for g in lower(layer)}


# --- shapes --------------------------------------------------------------------------------------

def test_gqa_shapes_by_hand():
    # b=2 sequences, l=2 queries, 6 heads of 8 over 2 K/V heads: groups of g=3 query heads.
    att = Attention("a", b=2, l=2, e=48, heads=6, kv_heads=2, kv_len=5)
    s = shapes(att)
    assert s["k"] == s["v"] == (4, 48, 16, 1)          # 2 K/V heads · 8 = 16 wide
    assert s["qk"] == (6, 8, 5, 4)                      # g·l = 6 rows, b · 2 K/V heads
    assert s["pv"] == (6, 5, 8, 4)
    assert set(s) == {"q", "k", "v", "qk", "pv", "o"}
    # MQA: all 6 heads on one K/V head, 12 rows per sequence.
    s = shapes(replace(att, kv_heads=1))
    assert s["qk"] == (12, 8, 5, 2) and s["pv"] == (12, 5, 8, 2) and s["k"] == (4, 48, 8, 1)
    # MHA stays one GEMM per (sequence, head).
    s = shapes(replace(att, kv_heads=None))
    assert s["qk"] == (2, 8, 5, 12) and s["pv"] == (2, 5, 8, 12)


def test_a_partial_group_falls_back_per_head():
    att = Attention("a", b=2, l=2, e=48, heads=6, kv_heads=2, kv_len=5)
    s = shapes(replace(att, heads_kept=4))   # one whole group of 3 + 1 head of the next
    assert s["qk"] == (6, 8, 5, 2) and s["pv"] == (6, 5, 8, 2)
    assert s["qk_partial"] == (2, 8, 5, 2) and s["pv_partial"] == (2, 5, 8, 2)
    assert s["k"] == (4, 48, 16, 1)          # both K/V heads still in use
    s = shapes(replace(att, heads_kept=2))   # no whole group: every head on its own
    assert "qk" not in s and s["qk_partial"] == (2, 8, 5, 4) and s["k"] == (4, 48, 8, 1)
    s = shapes(replace(att, heads_kept=3))   # exactly one group
    assert s["qk"] == (6, 8, 5, 2) and "qk_partial" not in s


@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 3), l=st.integers(1, 5), hd=st.integers(1, 6),
       kv_heads=st.integers(1, 4), group=st.integers(1, 4), kv=st.integers(1, 9),
       kept=st.integers(1, 16), causal=st.booleans())
def test_stacked_lowering_covers_every_head_once(b, l, hd, kv_heads, group, kv, kept, causal):
    heads = kv_heads * group
    att = Attention("a", b=b, l=l, e=hd * heads, heads=heads, kv_heads=kv_heads, kv_len=kv,
                    heads_kept=min(kept, heads), causal=causal and kv >= l)
    gemms = lower(att)
    assert sum(g.dense_macs for g in gemms) == att.dense_macs
    for name in ("qk", "pv"):  # query rows over all instances = every kept head's l rows
        rows = sum(g.m * g.count for g in gemms if g.name.startswith(name))
        assert rows == b * att.active_heads * l
    stacked = [g for g in gemms if g.name == "qk"]
    assert sum(g.count for g in stacked) == b * (att.active_heads // group)
    # causal P stacked: every head's block of rows is the causal triangle
    for ops in gemm_operands(att, None):
        if ops.gemm.name.startswith("pv") and att.causal:
            rows = ops.a.reshape(-1, l, kv)
            for i in range(l):
                visible = np.arange(kv) <= kv - l + i
                assert (rows[:, i, :] == visible).all()


def test_a_shared_query_mask_repeats_once_per_stacked_head():
    att = Attention("a", l=3, e=24, heads=6, kv_heads=2, kv_len=5, heads_kept=5)
    mask = np.random.default_rng(0).random((3, 5)) < 0.5
    full, partial = stack_query_rows(mask, att)   # a group of 3 stacked, then 2 heads alone
    assert full.shape == (9, 5) and (full.reshape(3, 3, 5) == mask).all()
    assert (partial == mask).all()
    assert stack_query_rows(None, att) == [None, None]


def test_causal_effectual_macs_unchanged_by_stacking():
    # P of 4 causal queries over 4 keys: 10 visible products per head and output column.
    att = Attention("a", b=2, l=4, e=48, heads=6, kv_heads=2, causal=True)
    pv = next(o for o in gemm_operands(att, None) if o.gemm.name == "pv")
    skip = arch(**{"pe.kind": "skip", "pe.operand": "A"})
    assert compute(pv, skip).effectual_macs == 2 * 6 * 10 * 8


# --- K/V bytes --------------------------------------------------------------------------------

def kv_read_bytes(df):
    """DRAM bytes of the score GEMMs' W operand: Kᵀ (QKᵀ) and V (PV)."""
    score = df[df.gemm.str.startswith(("qk", "pv"))]
    return int((score.dram_read_data_bytes_w + score.dram_read_meta_bytes_w).sum())


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_kv_bytes_closed_form_mha_gqa_mqa(dataflow):
    # Decode, 2 sequences, 8 heads of 32, 256 keys, int8, buffers that hold every tile (all
    # tiles are whole 64-byte bursts here): K and V are each read once per K/V head.
    b, heads, d, kv = 2, 8, 32, 256
    a = arch(**{"array.dataflow": dataflow})
    got = {}
    for kv_heads in (8, 2, 1):
        att = Attention("a", b=b, l=1, e=heads * d, heads=heads, kv_heads=kv_heads, kv_len=kv)
        df = simulate(Workload("w", (att,)), a).df
        got[kv_heads] = kv_read_bytes(df)
        assert got[kv_heads] == b * kv_heads * 2 * kv * d  # K and V, one byte each
        assert df.refetch_bytes_w.sum() == 0
    assert got[2] * heads == got[8] * 2        # GQA: kv_heads / heads of MHA's
    assert got[1] * heads == got[8]            # MQA: 1 / heads


def test_a_buffer_too_small_for_the_group_rereads_exactly_the_refetches():
    # is on 4×4: QKᵀ has K = d = 12 on the rows (3 row folds) and M = g·l = 8 query rows on
    # the columns (2 column folds); each W tile (4 × 4 keys, 16 B) is stored as one 64-B burst.
    # Column folds run outer, so the W tiles go 0,1,2,0,1,2: a W buffer of two tiles re-reads
    # the second pass; one that holds the three reads each once.
    att = Attention("a", l=4, e=24, heads=2, kv_heads=1)
    base = {"array.dataflow": "is", "array.rows": 4, "array.cols": 4}
    distinct = 3 * 64 + 64  # QKᵀ: 3 tiles; PV: K = 4 keys, W = V [4 × 12]: one tile
    roomy = simulate(Workload("w", (att,)), arch(**base)).df
    assert kv_read_bytes(roomy) == distinct and roomy.refetch_bytes_w.sum() == 0
    tight = simulate(Workload("w", (att,)), arch(**base, **{"memory.sram_kib_w": 0.125})).df
    refetch = int(tight[tight.gemm.str.startswith(("qk", "pv"))].refetch_bytes_w.sum())
    assert refetch == 3 * 64
    assert kv_read_bytes(tight) == distinct + refetch


# --- KV-cache appends ------------------------------------------------------------------------

DECODE = Workload("dec", (
    Attention("l0.attn", l=1, e=64, heads=4, kv_heads=2, kv_len=16, causal=True),
    Linear("l0.mlp", in_features=64, out_features=96),
    Attention("l1.attn", l=1, e=64, heads=4, kv_heads=2, kv_len=16),
    Linear("head", in_features=64, out_features=40),
))


def append_bytes(df):
    kv = df[df.gemm.isin(["k", "v"])]
    return int((kv.dram_write_data_bytes_o + kv.dram_write_meta_bytes_o).sum())


def test_kv_appends_are_counted_exactly():
    tokens, layers, kv_heads, d = 3, 2, 2, 16
    steps = decode_steps(DECODE, tokens)
    # 16-bit outputs in 1-byte bursts: exactly 2 · kv_heads · d · o_bits / 8 per token per layer
    exact = simulate(steps, arch(**{"precision.o_bits": 16, "memory.burst_bytes": 1})).df
    assert append_bytes(exact) == tokens * layers * 2 * kv_heads * d * 16 // 8
    # 64-B bursts: each K/V row (1 × 32 outputs of 1 byte, one O tile) is written as one burst
    burst = simulate(steps, arch()).df
    assert append_bytes(burst) == tokens * layers * 2 * 64
    kv = burst[burst.gemm.isin(["k", "v"])]
    assert (kv.dram_write_bytes == kv.dram_write_data_bytes_o).all()  # only the O write


# --- decode over several tokens ------------------------------------------------------------------

def test_decode_steps_equal_single_steps_with_kv_len_by_hand():
    a = arch()
    many = simulate(decode_steps(DECODE, 3), a).df
    singles = []
    for t, kv in enumerate((16, 17, 18)):  # the cache grows by one entry per generated token
        layers = tuple(replace(x, kv_len=kv) if isinstance(x, Attention) else x
                       for x in DECODE.layers)
        df = simulate(Workload("dec", layers), a).df
        df["layer"] = f"step{t}." + df["layer"]
        singles.append(df)
    pd.testing.assert_frame_equal(many.reset_index(drop=True),
                                  pd.concat(singles, ignore_index=True))
    qk = many[many.gemm == "qk"]
    assert qk.N.tolist() == [16, 16, 17, 17, 18, 18]


def test_decode_refuses_what_is_not_a_decode_workload():
    with pytest.raises(SparsesimError) as err:
        decode_steps(Workload("mlp", (Linear("fc", 4, 4),)), 2)
    assert err.value.field == "decode_tokens" and "no attention layer" in err.value.message
    prefill = Workload("p", (Attention("attn", l=8, e=16, heads=2),))
    with pytest.raises(SparsesimError) as err:
        decode_steps(prefill, 2)
    assert err.value.layer == "attn" and "l = 8" in err.value.message
    for bad in (0, -1, True, 1.5):
        with pytest.raises(SparsesimError, match="positive integer"):
            decode_steps(DECODE, bad)


TOML = {
    "network": {"name": "d", "decode_tokens": 2},
    "layer": [{"name": "attn", "op": "attention", "l": 1, "e": 16, "heads": 2, "kv_len": 4},
              {"name": "fc", "op": "linear", "in_features": 16, "out_features": 8}],
}


def test_decode_tokens_from_toml_and_the_loader():
    w = workload_from_dict(TOML, file="d.toml")
    assert [x.name for x in w.layers] == ["step0.attn", "step0.fc", "step1.attn", "step1.fc"]
    assert [x.kv_len for x in w.layers if isinstance(x, Attention)] == [4, 5]
    assert len(workload_from_dict(TOML, decode_tokens=3).layers) == 6  # the argument wins
    bad = {**TOML, "network": {"name": "d", "decode_tokens": "many"}}
    with pytest.raises(SparsesimError) as err:
        workload_from_dict(bad, file="d.toml")
    assert (err.value.file, err.value.field) == ("d.toml", "network.decode_tokens")
    smol = load_workload("smollm2_135m_decode", decode_tokens=2)
    assert len(smol.layers) == 2 * len(load_workload("smollm2_135m_decode").layers)


def sparsesim(*args):
    return subprocess.run([sys.executable, "-m", "sparsesim.cli", *args], capture_output=True,
                          text=True)


def test_cli_decode_tokens(tmp_path):
    path = tmp_path / "dec.toml"
    path.write_text('[network]\nname = "dec"\n[[layer]]\nname = "attn"\nop = "attention"\n'
                    "l = 1\ne = 16\nheads = 2\nkv_heads = 1\nkv_len = 4\n")
    proc = sparsesim("run", "-w", str(path), "--decode-tokens", "2", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    import io
    df = pd.read_csv(io.StringIO(proc.stdout))
    qk = df[df.gemm == "qk"]
    assert qk.layer.tolist() == ["step0.attn", "step1.attn"] and qk.N.tolist() == [4, 5]
    assert qk.M.tolist() == [2, 2] and qk["count"].tolist() == [1, 1]  # MQA: 2 heads stacked
    proc = sparsesim("run", "-w", "resnet18", "--decode-tokens", "2")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "decode_tokens" in proc.stderr and "no attention layer" in proc.stderr
