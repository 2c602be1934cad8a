"""What a trace says about its compaction: totals in the meta, one line in `prune` and `run`."""

import pytest

from sparsesim.cli import main
from sparsesim.prune import PruneSpec, prune_workload
from sparsesim.sparsity.trace import compaction_text, load_trace
from sparsesim.workload.network import load_workload

# ResNet-18 by hand (He et al., Table 1): filters = conv1 64 + layer1 4·64 + layer2 4·128 + 128
# (downsample) + layer3 4·256 + 256 + layer4 4·512 + 512 + fc 1000; input channels = conv1 3
# + layer1 4·64 + layer2 (64 + 3·128 + 64) + layer3 (128 + 3·256 + 128) + layer4 (256 + 3·512
# + 256) + fc 512.
R18_FILTERS = 64 + 256 + 640 + 1280 + 2560 + 1000
R18_INPUTS = 3 + 256 + 512 + 1024 + 2048 + 512


def test_line_from_a_hand_written_meta() -> None:
    meta = {"compaction": {"compacted": True, "graph": "declared", "layers_compacted": 3,
                           "filters_removed": 10, "filters_total": 40, "inputs_removed": 5,
                           "inputs_total": 20, "channels_removed": 0, "channels_total": 8,
                           "folded_channels": 5, "folded_map_layers": 1}}
    assert compaction_text(meta) == (
        "compacted: 3 layers (declared graph), removed 10 of 40 filters (25.0 %), 5 of 20 "
        "input channels (25.0 %), 0 of 8 depthwise channels (0.0 %); 5 constant input "
        "channels folded into biases (exact; per-pixel bias maps in 1 layers, where padding "
        "meets them)")
    assert compaction_text({}) is None
    assert compaction_text({"compaction": {"compacted": False, "note": "kept"}}) \
        == "not compacted: kept"


def test_resnet18_totals_are_the_network_and_removals_its_shapes() -> None:
    wl = load_workload("resnet18")
    trace = prune_workload(wl, PruneSpec("magnitude", granularity="filter", sparsity=0.5))
    comp = trace.meta["compaction"]
    assert comp["filters_total"] == R18_FILTERS
    assert comp["inputs_total"] == R18_INPUTS
    before = {x.name: x for x in wl.layers}
    gone_out = sum(before[x.name].out_channels - x.out_channels for x in trace.workload.layers)
    gone_in = sum(before[x.name].in_channels - x.in_channels for x in trace.workload.layers)
    assert comp["filters_removed"] == gone_out > 0
    assert comp["inputs_removed"] == gone_in > 0
    changed = sum(1 for x in trace.workload.layers if x != before[x.name])
    assert comp["layers_compacted"] == changed
    text = compaction_text(trace.meta)
    assert text is not None and f"{gone_out:,} of {R18_FILTERS:,} filters" in text


def test_head_compaction_counts_heads() -> None:
    wl = load_workload("bert_base_seq128")
    trace = prune_workload(wl, PruneSpec("magnitude", granularity="head", sparsity=0.5))
    comp = trace.meta["compaction"]
    assert (comp["heads_removed"], comp["heads_total"], comp["layers_compacted"]) \
        == (12 * 6, 12 * 12, 12)
    assert compaction_text(trace.meta) == (
        "compacted: 12 layers (within attention layers), removed 72 of 144 heads (50.0 %)")


@pytest.mark.parametrize("keep", [False, True])
def test_prune_and_run_print_the_compaction(tmp_path, capsys, keep) -> None:
    out = tmp_path / "r18.npz"
    flags = ["--keep-shape"] if keep else []
    assert main(["prune", "-w", "resnet18", "--granularity", "filter", "--sparsity", "0.5",
                 *flags, "-o", str(out)]) == 0
    said = capsys.readouterr().out
    line = compaction_text(load_trace(out).meta)
    assert line is not None and line.startswith("not compacted" if keep else "compacted: ")
    assert f"  {line}\n" in said
    assert main(["run", "--trace", str(out)]) == 0
    assert f"\n{line}\n" in capsys.readouterr().out
    assert main(["run", "--trace", str(out), "--format", "csv"]) == 0
    got = capsys.readouterr()
    assert line not in got.out and line in got.err  # beside the frame, not inside it
