"""Issue 17 checks applied to the attention operand masks (trace v3 ``{i}/act/{name}``) and
the sparse-attention flags: each bad value is one line naming it, refused before any member
data is read or any work is done."""

import io
import json
import zipfile
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import pytest

from sparsesim.cli import main
from sparsesim.errors import SparsesimError
from sparsesim.sparsity.masks import LayerMasks, SparsityModel
from sparsesim.sparsity.trace import Trace, load_trace
from sparsesim.workload.layers import Attention
from sparsesim.workload.network import Workload

ATT = Attention("att", b=1, l=4, e=8, heads=2)


def cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
    return code, err.getvalue()


@pytest.mark.parametrize("cmd", ["run", "prune"])
@pytest.mark.parametrize("flag, value", [("--attn-density", "1.5"), ("--attn-density", "nan"),
                                         ("--attn-density", "0"), ("--attn-top-k", "0"),
                                         ("--attn-top-k", "1.5"), ("--attn-top-k", "-2")])
def test_attention_flags_are_typed_in_both_commands(tmp_path, cmd, flag, value):
    extra = ["-o", str(tmp_path / "t.npz")] if cmd == "prune" else []
    code, err = cli(cmd, "-w", "minilm_l6_seq128", flag, value, *extra)
    assert code == 2 and len(err.strip().splitlines()) == 1 and flag in err
    assert not (tmp_path / "t.npz").exists()


@pytest.mark.parametrize("kwargs, field", [({"attn_top_k": True}, "attn_top_k"),
                                           ({"attn_top_k": 2.0}, "attn_top_k"),
                                           ({"attn_top_k": np.int64(0)}, "attn_top_k"),
                                           ({"attn_density": float("nan")}, "attn_density")])
def test_sparsity_model_refuses_bad_attention_fields(kwargs, field):
    with pytest.raises(SparsesimError) as err:
        SparsityModel(**kwargs)
    assert err.value.field == field


@pytest.fixture()
def v3_trace(tmp_path):
    shapes = ATT.activation_shapes()
    acts = {"p": np.ones(shapes["p"], bool)}
    path = tmp_path / "t.npz"
    Trace(Workload("net", (ATT,)), {"att": LayerMasks(activations=acts)}).save(path)
    return path


def _rewrite(path: Path, out: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    manifest = json.loads(np.load(io.BytesIO(members["manifest.npy"])).tobytes().decode())
    edit(manifest, members)
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(json.dumps(manifest).encode(), np.uint8))
    members["manifest.npy"] = buf.getvalue()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out


def test_a_v3_trace_with_attention_masks_still_loads(v3_trace):
    back = load_trace(v3_trace)
    assert set(back.masks["att"].activations) == {"p"}


def _unknown_operand(m, members):  # type: ignore[no-untyped-def]
    m["layers"][0]["masks"]["activations"]["zz"] = [1]
    members["0/act/zz.npy"] = members["0/act/p.npy"]


def _bad_shape(m, members):  # type: ignore[no-untyped-def]
    m["layers"][0]["masks"]["activations"]["p"] = [2, -1]


def _huge(m, members):  # type: ignore[no-untyped-def]
    m["layers"][0]["masks"]["activations"]["p"] = [2**20, 2**20]


def _not_a_table(m, members):  # type: ignore[no-untyped-def]
    m["layers"][0]["masks"]["activations"] = ["p"]


def _unlisted_member(m, members):  # type: ignore[no-untyped-def]
    del m["layers"][0]["masks"]["activations"]


def _version_true(m, members):  # type: ignore[no-untyped-def]
    m["version"] = True


@pytest.mark.parametrize("edit, field", [(_unknown_operand, "activations.zz"),
                                         (_bad_shape, "activations.p"), (_huge, "masks"),
                                         (_not_a_table, "masks.activations"),
                                         (_unlisted_member, "masks"),
                                         (_version_true, "version")])
def test_odd_attention_members_are_refused_naming_the_field(v3_trace, tmp_path, edit, field):
    bad = _rewrite(v3_trace, tmp_path / "bad.npz", edit)
    with pytest.raises(SparsesimError) as err:
        load_trace(bad)
    assert err.value.field == field and "\n" not in str(err.value)
