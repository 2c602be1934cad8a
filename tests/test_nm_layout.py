"""N:M layouts: groups along the flattened K (``flat``) or along input channels at each kernel
tap (``channel``, NVIDIA ASP), checked by hand on conv weights; what the N:M array does with
each (its K runs over (c, r, s): ASP's groups are conformant there only for 1×1 kernels)."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sparsesim.api import simulate
from sparsesim.arch.config import load_arch, with_overrides
from sparsesim.errors import SparsesimError
from sparsesim.prune import PruneSpec, keep_masks, prune_workload
from sparsesim.rules.nm import first_violation
from sparsesim.workload.layers import Conv2d, Linear
from sparsesim.workload.network import Workload


def _keep(layer, scores, layout, nm=(2, 4)):
    [keep] = keep_masks([(layer, "w", scores)],
                        PruneSpec(granularity="nm", nm=nm, nm_layout=layout))
    return keep


def test_by_hand_on_a_two_tap_conv():
    conv = Conv2d("c", c=4, h=2, w=3, m=1, r=1, s=2)
    s = np.zeros((1, 4, 1, 2))
    s[0, :, 0, 0] = [1, 2, 3, 4]  # tap s=0, channels 0..3
    s[0, :, 0, 1] = [8, 7, 6, 5]  # tap s=1
    # flat: K = (c0s0, c0s1, c1s0, c1s1 | c2s0, c2s1, c3s0, c3s1) = (1, 8, 2, 7 | 3, 6, 4, 5):
    # each group keeps its 2 highest, both at tap s=1
    flat = _keep(conv, s, "flat")
    np.testing.assert_array_equal(flat[0, :, 0, 0], [False] * 4)
    np.testing.assert_array_equal(flat[0, :, 0, 1], [True] * 4)
    # channel (ASP): at s=0 channels 2, 3 (scores 3, 4); at s=1 channels 0, 1 (8, 7)
    ch = _keep(conv, s, "channel")
    np.testing.assert_array_equal(ch[0, :, 0, 0], [False, False, True, True])
    np.testing.assert_array_equal(ch[0, :, 0, 1], [True, True, False, False])


def test_counts_on_a_first_conv():
    """3 input channels, 3×3 taps, 2:4: flat K = 27 keeps 6·2 + min(2, 3) = 14 per filter;
    channel keeps min(2, 3) = 2 at each of the 9 taps = 18."""
    conv = Conv2d("conv1", c=3, h=8, w=8, m=5, r=3, s=3)
    rng = np.random.default_rng(0)
    s = rng.random((5, 3, 3, 3))
    assert (_keep(conv, s, "flat").reshape(5, -1).sum(axis=1) == 14).all()
    ch = _keep(conv, s, "channel")
    assert (ch.sum(axis=1) == 2).all()  # per filter and tap: 2 of the 3 channels
    assert (ch.reshape(5, -1).sum(axis=1) == 18).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.sampled_from([(1, 4), (2, 4), (1, 2), (3, 8)]), st.integers(0, 2**16))
def test_channel_groups_exact(c, r, s, m, nm, seed):
    n, group = nm
    conv = Conv2d("c", c=c, h=4, w=4, m=m, r=r, s=s)
    keep = _keep(conv, np.random.default_rng(seed).random((m, c, r, s)), "channel", nm)
    for g0 in range(0, c, group):  # every group of channels at every (filter, tap)
        size = min(group, c - g0)
        assert (keep[:, g0:g0 + size].sum(axis=1) == min(n, size)).all()
    if r * s == 1:  # one tap per channel: the same groups as flat
        flat = _keep(conv, np.random.default_rng(seed).random((m, c, r, s)), "flat", nm)
        np.testing.assert_array_equal(keep, flat)


def test_linear_layouts_agree():
    fc = Linear("fc", in_features=12, out_features=3)
    s = np.random.default_rng(1).random((3, 12))
    np.testing.assert_array_equal(_keep(fc, s, "flat"), _keep(fc, s, "channel"))


NET = Workload("n", (Conv2d("c3", c=8, h=6, w=6, m=8, r=3, s=3, padding=1),
                     Conv2d("c1", c=8, h=6, w=6, m=8, r=1, s=1)))


def _arch(**pe):
    return with_overrides(load_arch("default"), {"pe.kind": "nm", "memory.ideal": True,
                                                 **{f"pe.{k}": v for k, v in pe.items()}})


def test_the_array_sees_k_as_lowered():
    trace = prune_workload(NET, PruneSpec(granularity="nm", nm_layout="channel"))
    w3 = trace.masks["c3"].weights["w"]
    # along the lowering's K (c, r, s) the 3×3 conv's ASP mask is not 2:4 ...
    assert first_violation(w3.reshape(8, -1).T, 2, 4) is not None
    # ... the 1×1 conv's is
    assert first_violation(trace.masks["c1"].weights["w"].reshape(8, -1).T, 2, 4) is None
    with pytest.raises(SparsesimError, match="ASP") as err:
        simulate(trace=trace, arch=_arch())
    assert err.value.layer == "c3"
    rows = simulate(trace=trace, arch=_arch(nm_nonconformant="dense")).df.set_index("layer")
    assert rows.loc["c3", "nm_mode"] == "dense" and rows.loc["c1", "nm_mode"] == "nm"
    flat = prune_workload(NET, PruneSpec(granularity="nm"))
    assert set(simulate(trace=flat, arch=_arch()).df["nm_mode"]) == {"nm"}


def test_layout_is_recorded_and_refused_off_nm(tmp_path):
    assert PruneSpec(granularity="nm", nm_layout="channel").as_dict()["nm_layout"] == "channel"
    assert "nm_layout" not in PruneSpec(granularity="nm").as_dict()
    with pytest.raises(SparsesimError, match="granularity 'nm'"):
        PruneSpec(nm_layout="channel")
    proc = subprocess.run([sys.executable, "-m", "sparsesim.cli", "prune", "-w", "resnet18",
                           "--nm-layout", "channel", "-o", str(tmp_path / "x.npz")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
