"""`sparsesim prune` refuses a flag it would accept and ignore: one line naming it, exit 2,
no trace written; the same flags where they act still run."""

import pytest

from sparsesim.cli import main

REFUSED = [
    (["-w", "bert_base_seq128", "--granularity", "kv", "--sparsity", "0"], "--sparsity 0"),
    (["-w", "bert_base_seq128", "--granularity", "head", "--sparsity", "0"], "--sparsity 0"),
    (["-w", "bert_base_seq128", "--granularity", "token", "--sparsity", "0"], "--sparsity 0"),
    (["-w", "resnet18", "--sparsity", "0"], "nothing else prunes"),
    (["-w", "resnet18", "--granularity", "filter", "--sparsity", "0"], "nothing else prunes"),
    (["-w", "resnet18", "--granularity", "filter", "--block", "8"], "--block"),
    (["-w", "resnet18", "--steps", "5"], "--steps"),
    (["--model", "digits", "--distribution", "laplace"], "--distribution"),
    (["--model", "digits", "--act-density", "0.5"], "--act-density"),
]


@pytest.mark.parametrize(("args", "words"), REFUSED)
def test_ignored_flags_are_refused(tmp_path, capsys, args, words):
    out = tmp_path / "x.npz"
    assert main(["prune", *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("args", [
    ["-w", "resnet18", "--granularity", "block", "--block", "2", "--sparsity", "0.5"],
    ["-w", "resnet18", "--distribution", "laplace"],
    ["-w", "resnet18", "--sparsity", "0", "--act-density", "0.5"],  # the activation model acts
])
def test_the_same_flags_where_they_act_still_run(tmp_path, args):
    assert main(["prune", *args, "-o", str(tmp_path / "x.npz")]) == 0
