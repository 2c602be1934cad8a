"""Masks of a layer's operands: real ones (from a trace) or drawn from a seeded model.

A :class:`LayerMasks` holds the non-zero pattern of a layer's weights, in the layer's own
shape, and of its input activations. Weight shapes follow PyTorch: conv ``[m, c/groups, r,
s]``, linear ``[out, in]``, attention projections ``q [heads·d, e]``, ``k``/``v``
``[kv_heads·d, e]``, ``o [e, heads·d]``; a matmul's ``[k, n]``. Inputs: conv ``[n, c, h, w]``,
linear ``[tokens, in]``, attention ``[b, l, e]``, matmul ``[m, k]``. ``None`` means dense.

:class:`SparsityModel` turns densities into masks when no trace is given: exactly
``keep_count(L, density=d)`` non-zero weights per tensor (:mod:`sparsesim.rules.keep`: the
nearest integer to ``d·L``; what magnitude pruning of i.i.d. weights leaves),
Bernoulli activations with an optional spread of per-channel densities, and keep ratios that
shrink attention (tokens, heads, KV entries). Every draw is seeded per layer, so a layer's
masks do not depend on which other layers ran.

*Mask-drawing versions* (``mask_draw_version``; :data:`MASK_DRAW_VERSIONS`). The same seed
gives the same masks only within one version; every version draws from the same
distributions, only which positions a seed picks differs. Version 1 (what every run before
the field drew, and every trace or result that does not record a version): exact-count
weight masks by ``rng.choice`` without replacement (a permutation: ~44 ns per element) and
Bernoulli activations by ``rng.random(shape) < d`` (float64). Version 2 (the default for new
runs; exact-count masks 8x (d = 0.3) to 65x (d = 0.5) faster on a 11008x4096 weight,
Bernoulli ones ~1.1-2x): Bernoulli activations from one uniform ``uint16`` per element
(:func:`bernoulli_mask`: ``u < t`` with ``t = floor(d·2¹⁶)``; the ``u == t`` bucket, 1 in
65,536 elements, is resolved by a float64 draw against ``d·2¹⁶ − t``, so each element is
Bernoulli(``d``) exactly, not ``t/2¹⁶``), and exact-count masks (:func:`exact_density_mask`)
as a Bernoulli draw of packed bits at ``d`` rounded to 8 binary digits (one random bit per
element at d = 0.5: ~0.4 ns per element where ``rng.choice`` takes ~44), followed by an exact
fix-up: the surplus (or missing) count, ~``sqrt(L·d(1−d)) + L/512`` positions at most, is
removed from (added to) uniformly chosen set (unset) positions. The result is uniform over
the masks with exactly ``keep_count(L, density=d)`` non-zeros, as version 1's: the Bernoulli
draw is exchangeable over positions and the fix-up picks uniformly, so every subset of that
size is equally likely (the Bernoulli probability itself only sets the fix-up's size).
Version 2 changes only these two draws; N:M, top-k, attention-probability and gradient masks
draw as in version 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from sparsesim.checks import MAX_SEED, real, whole
from sparsesim.errors import SparsesimError
from sparsesim.kernels.packed import PackedMask
from sparsesim.names import OnlineKind
from sparsesim.rules.keep import keep_count
from sparsesim.rules.nm import check_ratio, conformant_mask
from sparsesim.workload.layers import Attention, Layer

#: Mask-drawing versions this code draws (module docstring); 1 is every older run's.
MASK_DRAW_VERSIONS = (1, 2)
#: The version new runs draw with (a model or trace that records none drew version 1).
MASK_DRAW_VERSION = 2


def check_draw_version(value: object, field: str = "mask_draw_version") -> int:
    """``value`` as a known mask-drawing version, else one error naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in MASK_DRAW_VERSIONS:
        raise SparsesimError(f"unknown mask-drawing version {value!r}; this sparsesim draws "
                             f"versions {', '.join(map(str, MASK_DRAW_VERSIONS))}", field=field)
    return value


@dataclass(frozen=True)
class LayerMasks:
    """Non-zero patterns (bool arrays) of one layer's weights, input activations and internal
    activations (``activations``, keyed by :class:`~sparsesim.names.AttnOperand`, shapes
    :meth:`~sparsesim.workload.layers.Attention.activation_shapes`; a missing one is dense)."""

    weights: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: np.ndarray | None = None
    activations: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class PackedLayerMasks:
    """:class:`LayerMasks` with every mask bit-packed (:class:`~sparsesim.kernels.packed.
    PackedMask`, 1 bit per element): how a trace holds a whole network's masks in memory
    (Llama-2-7B's weights at 0.83 GB instead of 6.6 GB of bools); the engine unpacks one
    layer at a time as it streams the layers (:func:`as_bool`)."""

    weights: dict[str, PackedMask] = field(default_factory=dict)
    inputs: PackedMask | None = None
    activations: Mapping[str, PackedMask] = field(default_factory=dict)

    @classmethod
    def of(cls, masks: LayerMasks) -> PackedLayerMasks:
        return cls({k: PackedMask.of(v) for k, v in masks.weights.items()},
                   None if masks.inputs is None else PackedMask.of(masks.inputs),
                   {k: PackedMask.of(v) for k, v in masks.activations.items()})

    def unpack(self) -> LayerMasks:
        return LayerMasks({k: v.unpack() for k, v in self.weights.items()},
                          None if self.inputs is None else self.inputs.unpack(),
                          {k: v.unpack() for k, v in self.activations.items()})


AnyLayerMasks = LayerMasks | PackedLayerMasks


def as_bool(masks: AnyLayerMasks | None) -> LayerMasks | None:
    """``masks`` as bool arrays (packed ones unpacked; ``None`` stays dense)."""
    return masks.unpack() if isinstance(masks, PackedLayerMasks) else masks


def check_masks(layer: Layer, masks: AnyLayerMasks, *, file: str | None = None) -> None:
    """Shapes must match the layer: a mismatch names the layer, tensor, expected and got."""
    expected = layer.weight_shapes()
    for name, mask in masks.weights.items():
        if name not in expected:
            raise SparsesimError(f"no weight tensor {name!r}; expected {sorted(expected)}",
                                 file=file, layer=layer.name, field=f"weights.{name}")
        if mask.shape != expected[name]:
            raise SparsesimError(f"mask shape {mask.shape} does not match the layer: expected "
                                 f"{expected[name]}", file=file, layer=layer.name,
                                 field=f"weights.{name}")
    if masks.inputs is not None and masks.inputs.shape != layer.input_shape:
        raise SparsesimError(f"mask shape {masks.inputs.shape} does not match the layer: "
                             f"expected {layer.input_shape}", file=file, layer=layer.name,
                             field="inputs")
    internal = layer.activation_shapes()
    for name, mask in masks.activations.items():
        if name not in internal:
            raise SparsesimError(
                f"no internal activation {name!r}; a {layer.op} layer has "
                f"{', '.join(internal) if internal else 'none'}", file=file, layer=layer.name,
                field=f"activations.{name}")
        if mask.dtype != np.bool_ or mask.shape != internal[name]:
            raise SparsesimError(f"mask {mask.dtype} {mask.shape} does not match the layer: "
                                 f"expected bool {internal[name]}", file=file,
                                 layer=layer.name, field=f"activations.{name}")


@dataclass(frozen=True, slots=True)
class ActivationModel:
    """A seeded stand-in for one layer's measured input-activation mask.

    ``density`` is the fraction of non-zero inputs; ``channel_densities`` (optional) gives one
    density per input channel (conv ``c``, otherwise the last axis), e.g. measured per-channel
    ReLU densities. :meth:`draw` makes the Bernoulli mask, the same for the same seed and
    ``draw_version`` (module docstring; a trace that records none drew version 1).
    """

    density: float
    channel_densities: tuple[float, ...] | None = None
    seed: int = 0
    draw_version: int = MASK_DRAW_VERSION

    def __post_init__(self) -> None:
        _unit_interval(self.density, "density")
        if self.channel_densities is not None:
            for d in self.channel_densities:
                _unit_interval(d, "channel_densities")
        whole(self.seed, "seed", high=MAX_SEED)
        check_draw_version(self.draw_version, "draw_version")

    def draw(self, layer: Layer) -> np.ndarray:
        """The input mask of ``layer`` (shape :func:`input_shape`), seeded by ``seed``."""
        rng = np.random.default_rng(self.seed)
        if self.channel_densities is None:
            return bernoulli_inputs(layer, self.density, rng, version=self.draw_version)
        channels = layer.input_shape[layer.input_channel_axis]
        if len(self.channel_densities) != channels:
            raise SparsesimError(
                f"{len(self.channel_densities)} channel densities for {channels} input "
                "channels", layer=layer.name, field="channel_densities")
        return bernoulli_inputs(layer, np.asarray(self.channel_densities), rng,
                                version=self.draw_version)


def bernoulli_inputs(layer: Layer, density: float | np.ndarray,
                     rng: np.random.Generator, *, version: int = 1) -> np.ndarray:
    """A Bernoulli input mask of ``layer``: one density, or one per input channel."""
    shape = layer.input_shape
    if np.ndim(density) == 0:
        return bernoulli_mask(shape, density, rng, version=version)
    view = [1] * len(shape)
    view[layer.input_channel_axis] = shape[layer.input_channel_axis]
    return bernoulli_mask(shape, np.reshape(density, view), rng, version=version)


_U16 = 1 << 16


def bernoulli_mask(shape: tuple[int, ...], density: float | np.ndarray,
                   rng: np.random.Generator, *, version: int = 1) -> np.ndarray:
    """Each element non-zero with probability ``density`` (a number, or an array that
    broadcasts to ``shape``), drawn as mask-drawing ``version`` does (module docstring)."""
    if version == 1:
        return rng.random(shape) < density
    check_draw_version(version)
    size = math.prod(shape)
    u = np.frombuffer(rng.bytes(2 * size), dtype="<u2").reshape(shape)
    scaled = np.asarray(density, dtype=np.float64) * _U16
    t = np.floor(scaled)
    mask: np.ndarray = u < t.astype(np.int64) if t.ndim else u < int(t)
    tie = np.flatnonzero(u == (t.astype(np.int64) if t.ndim else int(t)))
    if tie.size:  # the u == t bucket: non-zero with probability frac(d·2¹⁶), exactly d overall
        frac = np.broadcast_to(scaled - t, shape).reshape(-1)[tie]
        mask.reshape(-1)[tie] = rng.random(tie.size) < frac
    return mask


def _unit_interval(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise SparsesimError(f"must be in [0, 1], got {value!r}", field=name)


ACT_PRUNE_KINDS = ("none", *OnlineKind)  # none: the zeros are there anyway (ReLU)


@dataclass(frozen=True, slots=True)
class SparsityModel:
    """Seeded statistical sparsity for runs without a trace. Densities are fractions in [0, 1].

    ``act_channel_std`` spreads the per-channel activation densities (Beta-distributed with
    mean ``act_density``), as real ReLU layers have dead and busy channels. The network's first
    input (an image, token embeddings) stays dense unless ``dense_first_input`` is false.
    ``token_keep``, ``head_keep`` and ``kv_keep`` shrink attention layers: fewer query tokens,
    fewer heads, fewer keys/values (:func:`~sparsesim.rules.keep.keep_count`, at least
    one). ``weight_nm = (n, m)`` draws
    N:M weight masks instead: exactly ``n`` kept of every ``m`` along the reduction axis (a
    last, shorter group keeps ``min(n, its length)``).

    ``act_prune`` says how the activation zeros arise: ``none`` — they are there anyway (ReLU),
    free; otherwise they are found at run time by the online pruning unit, which costs cycles
    and energy (:mod:`sparsesim.pe.online`): ``threshold`` (Bernoulli, as ``none``), ``dynamic``
    (a per-tensor threshold: exactly ``keep_count(size, density=d)`` kept), ``topk``
    (exactly ``keep_count(C, density=d)``, at least one, of each pixel's or token's ``C``
    channels) or ``nm`` (``act_nm = (n, m)``
    along the channels; the density is ``n/m``).

    Sparse attention (attention layers only; ``attn_density`` or ``attn_top_k``, not both)
    draws a mask of the probabilities P, among the keys each query may see (all, or the
    causal ones): ``attn_density = d`` keeps each with probability ``d`` (Bernoulli: a
    threshold on the probabilities, SpAtten/Sanger-style), ``attn_top_k = k`` keeps
    ``min(k, visible keys)`` of each query row at random positions (what top-k attention
    keeps, Gupta et al. 2021, without the values that would pick them). Either is found at
    run time by the online unit after ``QKᵀ`` (threshold or top-k), whose cost has its row
    (:mod:`sparsesim.engine.inference`). Q, K, V and the O projection's input stay dense.
    Drawn from their own seed stream, so the other masks are those a run without them draws.

    ``mask_draw_version`` says how the weight and activation masks are drawn (module
    docstring): the same seed gives the same masks within one version only.
    """

    weight_density: float = 1.0
    weight_nm: tuple[int, int] | None = None
    act_density: float = 1.0
    act_channel_std: float = 0.0
    dense_first_input: bool = True
    token_keep: float = 1.0
    head_keep: float = 1.0
    kv_keep: float = 1.0
    act_prune: str = "none"
    act_nm: tuple[int, int] | None = None
    attn_density: float = 1.0
    attn_top_k: int | None = None
    seed: int = 0
    mask_draw_version: int = MASK_DRAW_VERSION

    def __post_init__(self) -> None:
        check_draw_version(self.mask_draw_version)
        if self.act_prune not in ACT_PRUNE_KINDS:
            raise SparsesimError(f"unknown activation pruning {self.act_prune!r}; expected one "
                                 f"of {', '.join(ACT_PRUNE_KINDS)}", field="act_prune")
        if (self.act_prune == "nm") != (self.act_nm is not None):
            raise SparsesimError("act_nm = (n, m) goes with act_prune = 'nm', and only with it",
                                 field="act_nm")
        if self.act_nm is not None:
            check_ratio(self.act_nm, field="act_nm")
            if self.act_density != 1:
                raise SparsesimError("give act_density or act_nm, not both", field="act_nm")
        for name in ("weight_density", "act_density", "token_keep", "head_keep", "kv_keep"):
            _unit_interval(getattr(self, name), name)
        for name in ("token_keep", "head_keep", "kv_keep"):
            if getattr(self, name) == 0:
                raise SparsesimError("must be positive: a layer keeps at least one", field=name)
        if self.weight_nm is not None:
            check_ratio(self.weight_nm, field="weight_nm")
            if self.weight_density != 1:
                raise SparsesimError("give weight_density or weight_nm, not both",
                                     field="weight_nm")
        if not isinstance(self.dense_first_input, bool):
            raise SparsesimError(f"must be true or false, got {self.dense_first_input!r}",
                                 field="dense_first_input")
        whole(self.seed, "seed", high=MAX_SEED)
        _unit_interval(self.attn_density, "attn_density")
        if self.attn_density == 0:
            raise SparsesimError("must be positive (0 would drop every probability)",
                                 field="attn_density")
        if self.attn_top_k is not None:
            whole(self.attn_top_k, "attn_top_k", low=1)
            if self.attn_density != 1:
                raise SparsesimError("give attn_density or attn_top_k, not both",
                                     field="attn_top_k")
        d, s = self.act_density, real(self.act_channel_std, "act_channel_std", low=0)
        if s < 0 or (s > 0 and s * s >= d * (1 - d)):
            raise SparsesimError(
                f"must be in [0, sqrt(d(1-d))) = [0, {math.sqrt(d * (1 - d)):.3g}) for a Beta "
                f"spread around act_density {d}, got {s}", field="act_channel_std")

    @property
    def is_dense(self) -> bool:
        return (self.weight_density == 1 and self.weight_nm is None and self.act_density == 1
                and self.act_nm is None and self.token_keep == 1
                and self.head_keep == 1 and self.kv_keep == 1 and not self.sparse_attention)

    @property
    def versioned_draws(self) -> bool:
        """Whether a mask this model draws depends on ``mask_draw_version``: unstructured
        weights, or Bernoulli / per-tensor exact-count activations."""
        weights = self.weight_nm is None and self.weight_density < 1
        return weights or (self.act_keep < 1 and self.act_prune in ("none", "threshold",
                                                                      "dynamic"))

    @property
    def sparse_attention(self) -> bool:
        """Whether attention probabilities are pruned (``attn_density`` or ``attn_top_k``)."""
        return self.attn_density != 1 or self.attn_top_k is not None

    def shape(self, layer: Layer) -> Layer:
        """The layer after token, head and KV pruning (other layers are returned as they are)."""
        if not isinstance(layer, Attention) or (
                self.token_keep == self.head_keep == self.kv_keep == 1):
            return layer
        tokens = keep_count(layer.l, density=self.token_keep, at_least=1)
        kv_len = layer.kv_len
        if self.kv_keep != 1:  # KV entries are pruned among the (kept) keys
            kv_len = keep_count(tokens if kv_len is None else kv_len, density=self.kv_keep,
                                at_least=1)
        return replace(layer, l=tokens, kv_len=kv_len,
                       heads_kept=keep_count(layer.active_heads, density=self.head_keep,
                                             at_least=1))

    def masks(self, layer: Layer, index: int) -> LayerMasks:
        """Masks of ``layer`` (already shaped), the ``index``-th layer of its network."""
        rng = np.random.default_rng([self.seed, index])
        if self.weight_nm is not None:
            n, m = self.weight_nm
            weights = {name: conformant_mask(shape, n, m, layer.reduction_axes(name), rng=rng)
                       for name, shape in layer.weight_shapes().items()}
        else:
            weights = {name: exact_density_mask(shape, self.weight_density, rng,
                                                version=self.mask_draw_version)
                       for name, shape in layer.weight_shapes().items()}
        inputs = None
        if self.act_keep < 1 and not (index == 0 and self.dense_first_input):
            inputs = self._activations(layer, rng)
        return LayerMasks(weights, inputs, self.internal_masks(layer, index))

    def internal_masks(self, layer: Layer, index: int) -> dict[str, np.ndarray]:
        """The internal activation masks of ``layer`` (the ``index``-th): attention's P when
        sparse attention is asked for, from its own seed stream; none otherwise."""
        if not self.sparse_attention or "p" not in layer.activation_shapes():
            return {}
        return {"p": self.probabilities(layer, np.random.default_rng([self.seed, index, 1]))}

    def probabilities(self, layer: Layer, rng: np.random.Generator) -> np.ndarray:
        """The P mask ``[b, heads, l, kv]`` of an attention ``layer`` (class docstring)."""
        shape = layer.activation_shapes()["p"]
        assert isinstance(layer, Attention)
        causal = layer.causal_mask()
        visible = np.ones(shape[-2:], dtype=bool) if causal is None else causal
        draw = rng.random(shape)
        if self.attn_top_k is None:
            return (draw < self.attn_density) & visible
        draw[..., ~visible] = -1.0  # invisible keys rank last
        rank = np.argsort(np.argsort(-draw, axis=-1, kind="stable"), axis=-1, kind="stable")
        return (rank < self.attn_top_k) & visible

    @property
    def act_keep(self) -> float:
        """Fraction of activations kept (``n/m`` for N:M)."""
        return self.act_nm[0] / self.act_nm[1] if self.act_nm else self.act_density

    def _activations(self, layer: Layer, rng: np.random.Generator) -> np.ndarray:
        d = self.act_density
        shape = layer.input_shape
        axis = layer.input_channel_axis % len(shape)
        if self.act_prune == "nm":
            assert self.act_nm is not None
            return conformant_mask(shape, *self.act_nm, (axis,), rng=rng)
        if self.act_prune == "topk":  # top-k of C is k:C along the channels
            channels = shape[axis]
            return conformant_mask(shape, keep_count(channels, density=d, at_least=1),
                                   channels, (axis,), rng=rng)
        v = self.mask_draw_version
        if self.act_prune == "dynamic":
            return exact_density_mask(shape, d, rng, version=v)
        if self.act_channel_std > 0:
            kappa = d * (1 - d) / self.act_channel_std**2 - 1
            channels = layer.input_shape[layer.input_channel_axis]
            return bernoulli_inputs(layer, rng.beta(d * kappa, (1 - d) * kappa, size=channels),
                                    rng, version=v)
        return bernoulli_inputs(layer, d, rng, version=v)


def with_draw_version(model: SparsityModel, version: int | None, *,
                      field: str = "mask_draw_version") -> SparsityModel:
    """``model`` drawing with ``version`` (``None``: as it is); refused, naming ``field``,
    where no mask the model draws depends on the version (it would change nothing)."""
    if version is None:
        return model
    check_draw_version(version, field)
    if not model.versioned_draws:
        raise SparsesimError("no mask this run draws depends on the drawing version (N:M, "
                             "top-k and attention masks draw the same in every version): it "
                             "would change nothing", field=field)
    return replace(model, mask_draw_version=version)


def exact_density_mask(shape: tuple[int, ...], density: float,
                       rng: np.random.Generator, *, version: int = 1) -> np.ndarray:
    """A mask with exactly ``keep_count(size, density=density)`` non-zeros at uniformly
    random positions, drawn as mask-drawing ``version`` does (module docstring)."""
    size = math.prod(shape)
    if density >= 1:
        return np.ones(shape, dtype=bool)
    keep = keep_count(size, density=density)
    if version == 1:
        flat = np.zeros(size, dtype=bool)
        flat[rng.choice(size, keep, replace=False)] = True
        return flat.reshape(shape)
    check_draw_version(version)
    flat = _packed_bernoulli(size, density, rng)
    have = int(np.count_nonzero(flat))
    if have != keep:  # the fix-up: uniformly chosen surplus (missing) positions flip
        pool = have if have > keep else size - have
        flat[_distinct_among(flat, have > keep, abs(have - keep), pool, rng)] = have < keep
    return flat.reshape(shape)


#: Binary digits of the density a packed draw compares with (its step 2⁻⁸ leaves a surplus
#: or shortfall of at most size/512 for the fix-up to flip).
_DIGITS = 8


def _packed_bernoulli(size: int, density: float, rng: np.random.Generator) -> np.ndarray:
    """``size`` bools, each set with probability ``t / 2^D`` (``t = round(density·2⁸)``, its
    trailing zero digits dropped: ``D`` digits), drawn 64 at a time as packed words: a
    uniform ``U = 0.u₁u₂…u_D`` per element, one random word per digit, and ``U < t/2^D``
    evaluated bit-serially from the last digit (``lt = ~u | lt`` where ``t``'s digit is 1,
    ``~u & lt`` where it is 0). ``D`` random bits per element: one at density 0.5."""
    t, digits = round(density * (1 << _DIGITS)), _DIGITS
    if t in (0, 1 << _DIGITS):
        return np.full(size, t > 0, dtype=bool)
    while t % 2 == 0:
        t, digits = t // 2, digits - 1
    words = -(-size // 64)
    u = np.frombuffer(rng.bytes(8 * words * digits), dtype="<u8").reshape(digits, words)
    lt = np.zeros(words, dtype="<u8")
    for j in range(digits - 1, -1, -1):  # digit j + 1 after the point is bit digits-1-j of t
        lt = (~u[j] | lt) if (t >> (digits - 1 - j)) & 1 else (~u[j] & lt)
    bits: np.ndarray = np.unpackbits(lt.view(np.uint8), count=size, bitorder="little")
    return bits.view(bool)


def _distinct_among(flat: np.ndarray, value: bool, count: int, pool: int,
                    rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct positions, uniformly chosen among the ``pool`` positions where
    ``flat == value``: uniform draws over all positions, those holding ``value`` kept, the
    first ``count`` distinct ones taken (sequential sampling without replacement; no index
    array of the whole mask)."""
    chosen = np.empty(0, dtype=np.int64)
    while chosen.size < count:
        need = count - chosen.size
        draws = rng.integers(0, flat.size, size=int(need * flat.size / pool * 1.25) + 16)
        cand = np.concatenate([chosen, draws[flat[draws] == value]])
        _, first = np.unique(cand, return_index=True)
        chosen = cand[np.sort(first)][:count]
    return chosen
