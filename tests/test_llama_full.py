"""Whole-model Llama-2 workloads (issue 20 item 7) against the published configs and
checkpoint sizes; every expected number is written out here from its source."""

from __future__ import annotations

import pytest

from sparsesim import load_arch
from sparsesim.engine.size import check_size
from sparsesim.errors import SparsesimError
from sparsesim.sparsity.masks import SparsityModel
from sparsesim.workload.layers import Attention, Linear
from sparsesim.workload.network import load_workload

V = 32000  # vocab_size of every Llama-2 config.json


def _blocks(w, n):
    attn = [x for x in w.layers if isinstance(x, Attention)]
    assert len(attn) == n
    assert [x.name for x in attn] == [f"layers.{i}.self_attn" for i in range(n)]
    return attn


@pytest.mark.parametrize("name", ["llama2_7b_prefill", "llama2_7b_decode"])
def test_7b_params_are_the_checkpoint_without_embedding_and_norms(name):
    # meta-llama/Llama-2-7b-hf: 6,738,415,616 parameters; the workload leaves out the token
    # embedding (32000 x 4096, a lookup) and 2 RMSNorms per block + the final one (65 x 4096).
    w = load_workload(name)
    assert w.params + V * 4096 + 65 * 4096 == 6_738_415_616
    attn = _blocks(w, 32)
    assert all(a.e == 4096 and a.heads == 32 and a.head_dim == 128 and a.e_kv == 4096
               for a in attn)
    ups = [x for x in w.layers if x.name.endswith("mlp.up_proj")]
    assert len(ups) == 32 and all(x.out_features == 11008 for x in ups)
    assert w.layers[-1].name == "lm_head" and w.layers[-1].out_features == V


def test_7b_prefill_macs_closed_form():
    w = load_workload("llama2_7b_prefill")
    l, e, f = 2048, 4096, 11008
    # 32 blocks + the lm_head on the last position only
    assert w.dense_macs == 32 * (4 * l * e * e + 2 * l * l * e + 3 * l * e * f) + e * V
    assert w.dense_macs == 14_362_501_709_824
    assert all(a.causal and a.l == 2048 for a in _blocks(w, 32))
    assert w.layer("lm_head").tokens == 1
    assert all(x.tokens == 2048 for x in w.layers if isinstance(x, Linear)
               and x.name != "lm_head")


def test_7b_decode_macs_closed_form():
    w = load_workload("llama2_7b_decode")
    e, f, kv = 4096, 11008, 2048
    assert w.dense_macs == 32 * (4 * e * e + 2 * kv * e + 3 * e * f) + e * V == 7_143_948_288
    assert all((a.l, a.keys) == (1, kv) for a in _blocks(w, 32))


def test_70b_decode_is_gqa_and_adds_up_to_the_checkpoint():
    # meta-llama/Llama-2-70b-hf: 68,976,648,192 parameters; hidden 8192, intermediate 28672,
    # 64 heads, 8 KV heads, 80 layers. Left out: embedding 32000 x 8192, 161 RMSNorms of 8192.
    w = load_workload("llama2_70b_decode")
    assert w.params + V * 8192 + 161 * 8192 == 68_976_648_192
    attn = _blocks(w, 80)
    assert all(a.heads == 64 and a.kv_heads == 8 and a.group_size == 8 and a.e_kv == 1024
               for a in attn)
    e, ekv, f, kv = 8192, 1024, 28672, 2048
    assert w.dense_macs == 80 * (2 * e * e + 2 * e * ekv + 2 * kv * e + 3 * e * f) + e * V
    assert w.dense_macs == 71_397_539_840


@pytest.mark.parametrize("name", ["llama2_7b_prefill", "llama2_7b_decode", "llama2_70b_decode"])
def test_the_size_guards_take_them_at_half_density(name):
    model = SparsityModel(weight_density=0.5, act_density=0.5)
    size = check_size(list(load_workload(name).layers), load_arch("default"), sparsity=model)
    assert size.elements <= 2**31


def test_70b_decode_on_a_16x16_array_is_refused_by_the_fold_guard():
    # gemmini_like's 16 x 16 ws array: 269,721,600 folds, over the 5e7 the guard allows.
    with pytest.raises(SparsesimError, match="269,721,600 array folds"):
        check_size(list(load_workload("llama2_70b_decode").layers), load_arch("gemmini_like"))
