"""Dynamic pruning: per-input shapes, the gates' cost, the distribution, and bad input."""

import numpy as np
import pytest

from sparsesim import simulate
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.engine.dynamic import DynamicInputs, synthetic_dynamic
from sparsesim.errors import SparsesimError
from sparsesim.workload.layers import Attention, Conv2d, Linear
from sparsesim.sparsity.masks import LayerMasks, SparsityModel
from sparsesim.sweep import run_point
from sparsesim.sparsity.trace import Trace, load_trace
from sparsesim.workload.network import Workload

CNN = Workload("cnn", (Conv2d("c1", c=3, h=8, w=8, m=16, r=3, s=3, padding=1),
                       Conv2d("c2", c=16, h=8, w=8, m=32, r=3, s=3, padding=1),
                       Linear("fc", in_features=32, out_features=10, tokens=64)))
BERT = Workload("bert", (Attention("a1", l=16, e=32, heads=4),
                         Linear("ff1", in_features=32, out_features=64, tokens=16),
                         Attention("a2", l=16, e=32, heads=4),
                         Linear("ff2", in_features=32, out_features=64, tokens=16)))
ARCH = with_overrides(load_arch("default"), {"memory.ideal": True, "pe.kind": "skip",
                                             "array.rows": 8, "array.cols": 8})


def test_keeping_everything_is_the_static_run_for_every_input():
    dyn = synthetic_dynamic(CNN, inputs=3)
    assert dyn.layers == {}
    r = simulate(CNN, ARCH, dynamic=dyn, sparsity=SparsityModel(act_density=0.5))
    static = simulate(CNN, ARCH, sparsity=SparsityModel(act_density=0.5)).totals
    assert (r.per_input["cycles"] == static["cycles"]).all()
    assert r.totals["cycles"] == static["cycles"] and r.totals["cycles_p99"] == static["cycles"]


def test_a_channel_gate_shrinks_its_layer_zeroes_the_next_input_and_costs_its_gemv():
    dyn = DynamicInputs(2, {"c1": {"channel_keep": (0.5, 0.25)}}, {"c1": "c2"})
    r = simulate(CNN, ARCH, dynamic=dyn)
    df = r.df
    for i, kept in ((0, 8), (1, 4)):
        rows = df[df.input == i].set_index(["layer", "gemm"])
        assert rows.loc[("c1", "conv"), "N"] == kept
        # c2 reads c1's output: the skipped channels are zeros its skipping PEs pass over
        # (a 3×3 window with padding 1 on 8×8 sees 22 × 22 real taps per channel and filter)
        assert rows.loc[("c2", "conv"), "effectual_macs"] == 22 * 22 * 32 * kept
        gate = rows.loc[("c1.gate", "fc")]
        assert (gate["M"], gate["K"], gate["N"]) == (1, 3, 16)  # pooled c → m, per image
        assert rows.loc[("c1", "online_topk"), "energy_online_pj"] > 0
    p = r.per_input.set_index("input")
    assert p.loc[1, "cycles"] < p.loc[0, "cycles"] < r.static.totals["cycles"]
    gate_rows = df[(df.op == "gate") | (df.gemm == "online_topk")]
    assert np.allclose(p["gate_cycles"], gate_rows.groupby("input")["cycles"].sum())


def test_gated_channels_stay_dense_without_a_declared_consumer():
    # across a residual add the shortcut fills the skipped channels in: no consumer, no zeros
    dyn = DynamicInputs(1, {"c1": {"channel_keep": (0.5,)}})
    rows = simulate(CNN, ARCH, dynamic=dyn).df.set_index(["layer", "gemm"])
    assert rows.loc[("c2", "conv"), "effectual_macs"] == 64 * 9 * 16 * 32  # dense: all of it


def test_online_activation_pruning_runs_for_every_input():
    model = SparsityModel(act_density=0.5, act_prune="topk")
    r = simulate(CNN, ARCH, dynamic=DynamicInputs(2, {"c1": {"channel_keep": (0.5, 0.5)}}),
                         sparsity=model)
    static_online = (r.static.df["gemm"] == "online_topk").sum()
    per_input = r.df[(r.df.gemm == "online_topk") & (r.df.layer != "c1")].groupby("input").size()
    assert static_online == 2 and (per_input == 2).all()


def test_synthetic_gates_leave_the_classifier_alone():
    dyn = synthetic_dynamic(CNN, inputs=2, channel_keep=0.5)
    assert set(dyn.layers) == {"c1", "c2"}


def test_tokens_cascade_through_attention_and_the_layers_after_it():
    dyn = DynamicInputs(1, {"a1": {"token_keep": (0.5,)}, "a2": {"token_keep": (0.25,)}})
    rows = simulate(BERT, ARCH, dynamic=dyn).df.set_index(["layer", "gemm"])
    assert rows.loc[("a1", "q"), "M"] == 8 and rows.loc[("ff1", "fc"), "M"] == 8
    assert rows.loc[("a2", "q"), "M"] == 4 and rows.loc[("ff2", "fc"), "M"] == 4
    # each pruning layer ranks the tokens still alive before it
    a1, a2 = rows.loc[("a1", "online_topk")], rows.loc[("a2", "online_topk")]
    assert a1["elements"] == 16 and a2["elements"] == 8
    assert a1["kind"] == a2["kind"] == "gate" and a1["M"] == a1["K"] == a1["N"] == 0


def test_the_distribution_is_over_inputs():
    dyn = synthetic_dynamic(BERT, inputs=12, token_keep=0.4, head_keep=0.6, spread=0.2, seed=3)
    r = simulate(BERT, ARCH, dynamic=dyn)
    cycles = r.per_input["cycles"].to_numpy()
    s = r.summary.set_index("metric")
    assert s.loc["cycles", "p50"] == np.percentile(cycles, 50)
    assert s.loc["cycles", "p99"] == np.percentile(cycles, 99)
    assert s.loc["cycles", "mean"] == pytest.approx(cycles.mean())
    assert cycles.min() < cycles.max() < s.loc["cycles", "static"]
    assert "dynamic pruning over 12 inputs" in r.table()


def test_a_trace_carries_the_ratios(tmp_path):
    dyn = DynamicInputs(2, {"a1": {"head_keep": (0.5, 1.0)}})
    path = tmp_path / "dyn.npz"
    Trace(BERT, {}, {"dynamic": dyn.as_meta()}).save(path)
    r = simulate(trace=path, arch=ARCH)
    heads = r.df[(r.df.layer == "a1") & (r.df.gemm == "qk")].set_index("input")["count"]
    assert heads.tolist() == [2, 4]
    # one entry point: the loaded trace object runs per input as its file does
    again = simulate(trace=load_trace(path), arch=ARCH)
    assert again.df.drop(columns="elapsed_s", errors="ignore").equals(r.df)


@pytest.mark.parametrize("layers, field", [
    ({"a1": {"token_keep": [0.5]}}, "dynamic.token_keep"),          # one ratio, two inputs
    ({"a1": {"gate_keep": [0.5, 0.5]}}, "dynamic.gate_keep"),
    ({"ff1": {"head_keep": [0.5, 0.5]}}, "dynamic.head_keep"),      # heads of a linear layer
    ({"a1": {"token_keep": [0.5, 1.5]}}, "dynamic.token_keep"),
    ({"a1": {"token_keep": [0.5, 0.5]}, "a2": {"token_keep": [0.6, 0.4]}},
     "dynamic.token_keep"),                                          # tokens come back
])
def test_bad_ratios_name_the_layer_and_field(layers, field):
    with pytest.raises(SparsesimError) as err:
        DynamicInputs.from_meta({"inputs": 2, "layers": layers}, BERT, file="t.npz")
    assert err.value.field == field and err.value.file == "t.npz" and err.value.layer


def test_a_consumer_must_read_the_gated_channels():
    with pytest.raises(SparsesimError) as err:
        DynamicInputs.from_meta({"inputs": 1, "layers": {}, "consumers": {"c2": "c1"}}, CNN)
    assert err.value.field == "dynamic.consumers"
    DynamicInputs.from_meta({"inputs": 1, "layers": {}, "consumers": {"c1": "c2"}}, CNN)


def test_grouped_convs_and_training_are_refused():
    dw = Workload("dw", (Conv2d("dw", c=8, h=4, w=4, m=8, r=3, s=3, padding=1, groups=8),))
    with pytest.raises(SparsesimError, match="grouped"):
        DynamicInputs.from_meta({"inputs": 1, "layers": {"dw": {"channel_keep": [0.5]}}}, dw)
    from sparsesim.engine.training import Training
    with pytest.raises(SparsesimError, match="training"):
        simulate(BERT, ARCH, training=Training(), dynamic=synthetic_dynamic(
            BERT, inputs=2, head_keep=0.5))


def test_a_sweep_point_reports_the_percentiles():
    row = run_point({"workload": "minilm_l6_seq128", "memory.ideal": True,
                     "dynamic.inputs": 3, "dynamic.token_keep": 0.5, "dynamic.seed": 1})
    assert row["status"] == "ok", row["error"]
    assert row["inputs"] == 3 and row["cycles_p50"] <= row["cycles_p99"]
    assert row["cycles"] < run_point({"workload": "minilm_l6_seq128",
                                      "memory.ideal": True})["cycles"]


def test_a_batched_trace_runs_each_element_alone():
    # the workload is a calibration batch of 3 images: input i is image i at batch 1
    batch = Workload("b3", (Conv2d("c1", c=3, h=8, w=8, m=16, r=3, s=3, padding=1, n=3),
                            Conv2d("c2", c=16, h=8, w=8, m=32, r=3, s=3, padding=1, n=3)))
    inputs = np.zeros((3, 16, 8, 8), dtype=bool)
    inputs[0], inputs[1, :8], inputs[2, :4] = True, True, True  # 16, 8, 4 live channels
    trace = Trace(batch, {"c2": LayerMasks({}, inputs)},
                  {"dynamic": {"inputs": 3, "layers": {}, "batched": True}})
    r = simulate(trace=trace, arch=ARCH)
    c2 = r.df[r.df.layer == "c2"].set_index("input")
    assert (c2["M"] == 64).all()  # one image's 8 × 8 output pixels
    assert c2["effectual_macs"].tolist() == [22 * 22 * 32 * k for k in (16, 8, 4)]
    # static: each image alone with nothing pruned (here the same as dynamic)
    assert r.summary.set_index("metric").loc["cycles", "static"] == pytest.approx(
        r.per_input["cycles"].mean())
    with pytest.raises(SparsesimError, match="batch 3 is not 2 inputs"):
        DynamicInputs.from_meta({"inputs": 2, "layers": {}, "batched": True}, batch)


@pytest.mark.parametrize("field, value", [("inputs", 0), ("inputs", 2.5), ("seed", -1),
                                          ("channel_keep", 0.0), ("token_keep", 1.5),
                                          ("spread", -0.1), ("head_keep", True)])
def test_a_dynamic_model_refuses_bad_values_naming_the_field(field, value):
    from sparsesim.engine.dynamic import DynamicModel

    with pytest.raises(SparsesimError, match=f"dynamic.{field}"):
        DynamicModel(**{field: value})


def test_a_dynamic_model_draws_what_synthetic_dynamic_draws():
    from sparsesim.engine.dynamic import DynamicModel

    model = DynamicModel(inputs=4, token_keep=0.5, head_keep=0.7, seed=2)
    assert model.draw(BERT) == synthetic_dynamic(BERT, inputs=4, token_keep=0.5, head_keep=0.7,
                                                 seed=2)
