"""Blind-key row tags: what makes a shuffle verifiable against one malicious helper.

For each helper j, the other two (j+1 and j+2) share a PRSS seed that j never
sees; from it, under a step, they derive a **tag key** K_j that j does not
know while the shuffle runs. K_j maps a row to one or more 64-bit words and
is linear in the row's sharing:

- boolean columns: a uniform GF(2)-linear map from every bit of the row's
  words (padding bits included) to one 64-bit word, evaluated with one
  256-entry table per byte of the row (:class:`TagKey`);
- arithmetic columns (``uint64``): two independent keys, each a uniform
  multiplier per column, ``Σ_c m_c·x_c mod 2^64`` (two tag words).

**Creation** (:func:`make_tags`, 1 round). x = x_j ∘ x_{j+1} ∘ x_{j+2} (∘ is
XOR or +). Helper j+1 holds x_{j+1}, x_{j+2} and computes u = K_j(x_{j+1} ∘
x_{j+2}); helper j+2 holds x_j and computes v = K_j(x_j). With a, b drawn from
their seed, the tag t_j = K_j(x) is shared as component j+2 = a (both hold
it), component j+1 = u − a + b (j+1 sends it to j), component j = v − b (j+2
sends it to j). Helper j receives two words masked by b whose sum is masked
by a: nothing.

**Opening the keys** (:func:`open_keys`, 1 round) happens after every message
of the shuffle was received: K_j goes to j from the helper that received j's
last shuffle message, and a SHA-256 of it from the other holder, so j gets
the right key or aborts, and cannot adapt any shuffle message to it.

**Checks** (:func:`check_tags`, 1 round), with every key now public, so all
are linear in the shares:

1. creation: K_j(x) − t_j = 0 for every j, on the input (``check_zero``:
   the honest pair holds every component and catches any nonzero value,
   so a helper that co-created a wrong tag is caught);
2. the two-party sharing after the shuffle's first permutation (H2's and
   H3's parts): K_j(row) − t_j = 0, H2 sends H3 a digest of its half;
3. the output: K_j(x′) − t′_j = 0 for every j (``check_zero``).

Why it is sound, and what is learnt: ``docs/malicious.md`` (the shuffle
section). **Distributed** (W workers per helper): the keys come from the
group PRSS, the same at every worker of the two helpers that hold a key,
because a row's tag is made on the worker that holds the row before the
shuffle and checked on the one that holds it after; each triple opens the
keys (the same ones) and checks its own block of rows. The masks a and b
are per row, from the triple's PRSS. No triple opens a key before every
worker of the opening helper has received its triple's shuffle messages
(:func:`ipa.mpc.shuffle.shuffle`). A failed check raises
MaliciousBehaviourError ("shuffle key" or
"shuffle tags"), never a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ipa.errors import MaliciousBehaviourError
from ipa.mpc.channel import Peer
from ipa.mpc.context import Context
from ipa.mpc.replicated import AShares, BShares, Shares
from ipa.mpc.step import Steps
from ipa.mpc.verify import DIGEST_BYTES, check_zero, digest

__all__ = [
    "ARITHMETIC_KEYS",
    "CHECK_STEPS",
    "TAG_STEPS",
    "Layout",
    "TagKey",
    "Tagged",
    "check_tags",
    "make_tags",
    "open_keys",
    "split_tags",
]

ARITHMETIC_KEYS = 2
"""Independent arithmetic tag words per helper: each passes an error 2^v·u (u odd) with
probability 2^-(64-v), so two give 2^-66 for every error below 2^32."""

TAG_STEPS = Steps("shuffle_tags", "key", "mask", "create")
"""``key``: the PRSS draw of the keys; ``mask``: of a and b; ``create``: the two masked words to j."""
CHECK_STEPS = Steps("shuffle_check", "open_key", "stage_1", "zero")
"""``open_key``: the keys and their digests; ``stage_1``: H2's digest of its first-stage half;
``zero``: the creation and output checks."""

_WORD = np.dtype(np.uint64)
_BITS = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(bool)  # (256, 8): the bits of each byte
_LIKE_DIGEST = np.zeros(DIGEST_BYTES, np.uint8)


@dataclass(frozen=True)
class Layout:
    """Which of a shuffle's columns are boolean, and their size per row.

    ``boolean_bytes``: bytes per row of all boolean columns (each word's bytes,
    stacked columns each counted); ``arithmetic``: number of uint64 sub-columns.
    """

    boolean: tuple[int, ...]
    arithmetic: tuple[int, ...]
    boolean_bytes: int
    arithmetic_columns: int

    @classmethod
    def of(cls, columns: Sequence[Shares]) -> Layout:
        boolean = tuple(k for k, c in enumerate(columns) if isinstance(c, BShares))
        arithmetic = tuple(k for k, c in enumerate(columns) if not isinstance(c, BShares))
        for k in arithmetic:
            if columns[k].dtype != _WORD:
                raise ValueError(
                    f"a malicious shuffle tags arithmetic columns in uint64 only (their low 32 bits "
                    f"are verified), got {columns[k].dtype} for column {k}"
                )
        per_row = [int(np.prod(columns[k].shape[:-1])) for k in range(len(columns))]
        return cls(
            boolean,
            arithmetic,
            sum(per_row[k] * columns[k].dtype.itemsize for k in boolean),
            sum(per_row[k] for k in arithmetic),
        )

    @property
    def key_words(self) -> int:
        """uint64 words of one helper's key material: 8 per boolean byte, 2 per arithmetic column."""
        return 8 * self.boolean_bytes + ARITHMETIC_KEYS * self.arithmetic_columns

    @property
    def tag_columns(self) -> int:
        """Tag columns per helper: one boolean word if any boolean column, two arithmetic words if any."""
        return (1 if self.boolean else 0) + (1 if self.arithmetic else 0)


@dataclass(frozen=True)
class TagKey:
    """One helper's tag key, from its raw material (``Layout.key_words`` uint64 words).

    ``tables``: (P, 256) uint64, the boolean map byte by byte; ``multipliers``:
    (2, m) uint64, the arithmetic keys.
    """

    material: np.ndarray
    tables: np.ndarray
    multipliers: np.ndarray

    @classmethod
    def from_material(cls, material: np.ndarray, layout: Layout) -> TagKey:
        p = layout.boolean_bytes
        columns = material[: 8 * p].reshape(p, 8)  # the image of each bit of each byte
        tables = np.bitwise_xor.reduce(np.where(_BITS[None], columns[:, None, :], _WORD.type(0)), axis=2)
        multipliers = material[8 * p :].reshape(ARITHMETIC_KEYS, layout.arithmetic_columns)
        return cls(material, tables.astype(_WORD), multipliers)

    def boolean(self, parts: Sequence[np.ndarray], n: int) -> np.ndarray:
        """The boolean map of one component of the boolean columns: (n,) uint64."""
        out = np.zeros(n, _WORD)
        if n == 0:  # an empty block (a worker's, distributed)
            return out
        position = 0
        for part in parts:
            rows = np.ascontiguousarray(part.reshape(-1, n).T).view(np.uint8).reshape(n, -1)
            for k in range(rows.shape[1]):  # bytes of a row, never the rows
                out ^= self.tables[position + k][rows[:, k]]
            position += rows.shape[1]
        return out

    def arithmetic(self, parts: Sequence[np.ndarray], n: int) -> np.ndarray:
        """The arithmetic maps of one component of the arithmetic columns: (2, n) uint64."""
        flat = [p.reshape(-1, n) if n else np.zeros((int(np.prod(p.shape[:-1])), 0), _WORD) for p in parts]
        stacked = np.concatenate(flat) if flat else np.zeros((0, n), _WORD)
        out = np.zeros((ARITHMETIC_KEYS, n), _WORD)
        for c in range(stacked.shape[0]):  # columns, never the rows
            out += self.multipliers[:, c : c + 1] * stacked[c]
        return out


@dataclass(frozen=True)
class Tagged:
    """One party's tags for one shuffle.

    ``keys[j]`` is K_j where this party knows it (j ≠ party), else None;
    ``tags[j]`` the shares of t_j: a list of a BShares (64-bit) and/or an
    AShares of shape (2, n), in that order.
    """

    layout: Layout
    keys: list[TagKey | None]
    tags: list[list[Shares]]

    @property
    def columns(self) -> list[Shares]:
        """Every tag column, t_0's first: what the shuffle moves with the data."""
        return [t for per_helper in self.tags for t in per_helper]


def _parts(columns: Sequence[Shares], layout: Layout, side: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One component (``left`` or ``right``) of the boolean and the arithmetic columns."""
    pick = [getattr(c, side) for c in columns]
    return [pick[k] for k in layout.boolean], [pick[k] for k in layout.arithmetic]


def _apply(key: TagKey, layout: Layout, boolean: list[np.ndarray], arith: list[np.ndarray], n: int) -> list:
    """K(component): [boolean word (n,)] and/or [arithmetic words (2, n)], in tag order."""
    out = []
    if layout.boolean:
        out.append(key.boolean(boolean, n))
    if layout.arithmetic:
        out.append(key.arithmetic(arith, n))
    return out


def _tag_shares(layout: Layout, left: list[np.ndarray], right: list[np.ndarray]) -> list[Shares]:
    out: list[Shares] = []
    k = 0
    if layout.boolean:
        out.append(BShares(left[k], right[k], 64))
        k += 1
    if layout.arithmetic:
        out.append(AShares(left[k], right[k]))
    return out


def _masks(ctx: Context, peer: Peer, layout: Layout, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """a and b for one tag, drawn from the seed shared with ``peer``, in tag order."""
    words = ctx.draw(peer, (2, 1 + ARITHMETIC_KEYS, n), _WORD)
    a, b = [], []
    if layout.boolean:
        a.append(words[0, 0])
        b.append(words[1, 0])
    if layout.arithmetic:
        a.append(words[0, 1:])
        b.append(words[1, 1:])
    return a, b


def make_tags(ctx: Context, columns: Sequence[Shares]) -> Tagged:
    """Create t_j = K_j(row) for j = 0, 1, 2 as replicated shares (1 round).

    Each party sends its previous neighbour the component j+1 of t_j for
    j = party − 1, and its next neighbour the component j of t_j for
    j = party + 1: one word per tag word to each neighbour.
    """
    ctx = ctx.enter(TAG_STEPS)
    layout = Layout.of(columns)
    n, me = len(columns[0]), ctx.party
    key_ctx, mask_ctx, create = ctx.narrow("key"), ctx.narrow("mask"), ctx.narrow("create")
    # K_{me-1} is drawn from the seed shared with NEXT, K_{me+1} from the one shared with PREV;
    # distributed, from the group PRSS: a row's tag is checked on the worker the row goes to.
    draw = key_ctx.group_draw if ctx.distributed else key_ctx.draw
    as_first = TagKey.from_material(draw(Peer.NEXT, (layout.key_words,), _WORD), layout)
    as_second = TagKey.from_material(draw(Peer.PREV, (layout.key_words,), _WORD), layout)
    # As j+1 for j = me−1: u over my left and right; components j+1 (left) and j+2 (right, = a).
    bl, al = _parts(columns, layout, "left")
    br, ar = _parts(columns, layout, "right")
    on_left, on_right = _apply(as_first, layout, bl, al, n), _apply(as_first, layout, br, ar, n)
    u = [_combine(layout, i, [(on_left[i], 1), (on_right[i], 1)]) for i in range(len(on_left))]
    a1, b1 = _masks(mask_ctx, Peer.NEXT, layout, n)
    first_left = [_combine(layout, i, [(u[i], 1), (a1[i], -1), (b1[i], 1)]) for i in range(len(u))]
    # As j+2 for j = me+1: v over my right (component j); components j+2 (left, = a) and j (right).
    v = _apply(as_second, layout, br, ar, n)
    a2, b2 = _masks(mask_ctx, Peer.PREV, layout, n)
    second_right = [_combine(layout, i, [(v[i], 1), (b2[i], -1)]) for i in range(len(v))]
    create.send(Peer.PREV, *first_left)
    create.send(Peer.NEXT, *second_right)
    mine_right = create.receive(Peer.NEXT, *first_left)  # component me+1 of t_me, from me+1
    mine_left = create.receive(Peer.PREV, *second_right)  # component me of t_me, from me+2
    keys: list[TagKey | None] = [None, None, None]
    keys[(me - 1) % 3], keys[(me + 1) % 3] = as_first, as_second
    tags: list[list[Shares]] = [[], [], []]
    tags[(me - 1) % 3] = _tag_shares(layout, first_left, a1)
    tags[(me + 1) % 3] = _tag_shares(layout, a2, second_right)
    tags[me] = _tag_shares(layout, mine_left, mine_right)
    return Tagged(layout, keys, tags)


def _combine(layout: Layout, index: int, terms: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """Σ ±term for the arithmetic tag, XOR of the terms for the boolean one (index 0 if any)."""
    boolean = index == 0 and bool(layout.boolean)
    out = np.zeros_like(terms[0][0])
    for term, sign in terms:
        out = out ^ term if boolean else (out + term if sign > 0 else out - term)
    return out


def open_keys(ctx: Context, tagged: Tagged) -> list[TagKey]:
    """Every helper learns every key, after the shuffle: K_j to j, confirmed by a digest.

    K_0 (blind H1) goes from H2, its digest from H3; K_1 (blind H2) from H1,
    digest from H3; K_2 (blind H3) from H2, digest from H1. Each key is sent by
    the helper that received the blind helper's last shuffle message. Step
    ``open_key``, 1 round. Raises MaliciousBehaviourError("shuffle key").
    """
    me, layout = ctx.party, tagged.layout
    keys = tagged.keys
    prev_key, next_key = keys[(me - 1) % 3], keys[(me + 1) % 3]  # known through NEXT, through PREV seed
    assert prev_key is not None and next_key is not None

    def label(j: int) -> str:
        return f"{ctx.step}/key_{j}"

    if me == 0:
        ctx.send(Peer.NEXT, next_key.material)  # K_1 to H2
        ctx.send(Peer.PREV, digest(label(2), [prev_key.material]))  # digest of K_2 to H3
    elif me == 1:
        ctx.send(Peer.PREV, prev_key.material)  # K_0 to H1
        ctx.send(Peer.NEXT, next_key.material)  # K_2 to H3
    else:
        ctx.send(Peer.NEXT, digest(label(0), [next_key.material]))  # digest of K_0 to H1
        ctx.send(Peer.PREV, digest(label(1), [prev_key.material]))  # digest of K_1 to H2
    like = np.zeros(layout.key_words, _WORD)
    # The key comes from NEXT for H1, from PREV for H2 and H3; the digest from the other one.
    key_from, digest_from = (Peer.NEXT, Peer.PREV) if me == 0 else (Peer.PREV, Peer.NEXT)
    (material,) = ctx.receive(key_from, like)
    (expected,) = ctx.receive(digest_from, _LIKE_DIGEST)
    if not np.array_equal(digest(label(me), [material]), expected):
        raise MaliciousBehaviourError(
            "shuffle key", f"H{me + 1} received a tag key that differs from its second holder's"
        )
    out = list(keys)
    out[me] = TagKey.from_material(np.array(material), layout)
    return out  # type: ignore[return-value]


def _check_values(
    columns: Sequence[Shares], tagged_tags: list[list[Shares]], keys: list[TagKey], layout: Layout
) -> list[Shares]:
    """K_j(row) − t_j for every j, as shares (linear: each component mapped on its own)."""
    n = len(columns[0])
    bl, al = _parts(columns, layout, "left")
    br, ar = _parts(columns, layout, "right")
    out: list[Shares] = []
    for key, tags in zip(keys, tagged_tags, strict=True):
        left, right = _apply(key, layout, bl, al, n), _apply(key, layout, br, ar, n)
        for i, tag in enumerate(tags):
            if isinstance(tag, BShares):
                out.append(BShares(left[i] ^ tag.left, right[i] ^ tag.right, 64))
            else:
                out.append(AShares(left[i] - tag.left, right[i] - tag.right))
    return out


def split_tags(layout: Layout, columns: Sequence[Shares]) -> list[list[Shares]]:
    """The tag columns (as :attr:`Tagged.columns` lays them out) regrouped per helper."""
    per = layout.tag_columns
    return [list(columns[j * per : (j + 1) * per]) for j in range(3)]


def check_tags(
    ctx: Context,
    tagged: Tagged,
    data: Sequence[Shares],
    out_data: Sequence[Shares],
    out_tags: Sequence[Shares],
    stage_1: list[np.ndarray] | None,
) -> None:
    """Open the keys, then check creation, the first stage and the output (2 rounds).

    ``stage_1`` is this party's half of the sharing after the first
    permutation (data then tag columns): H2's and H3's, None at H1.
    Raises MaliciousBehaviourError("shuffle key" or "shuffle tags").
    """
    ctx = ctx.enter(CHECK_STEPS)
    layout = tagged.layout
    keys = open_keys(ctx.narrow("open_key"), tagged)
    stage = ctx.narrow("stage_1")
    if ctx.party in (1, 2):
        assert stage_1 is not None
        mine = _stage_1_digest(stage.step, layout, keys, stage_1, len(data), ctx.party == 2)
        if ctx.party == 1:
            stage.send(Peer.NEXT, mine)
        else:
            (theirs,) = stage.receive(Peer.PREV, _LIKE_DIGEST)
            if not np.array_equal(theirs, mine):
                raise MaliciousBehaviourError(
                    "shuffle tags", "H3 found the first stage of the shuffle altered (with H2's digest)"
                )
    created = _check_values(data, tagged.tags, keys, layout)
    moved = _check_values(out_data, split_tags(layout, out_tags), keys, layout)
    check_zero(ctx.narrow("zero"), {"shuffle tags": [*created, *moved]})


def _stage_1_digest(
    step: str, layout: Layout, keys: list[TagKey], half: list[np.ndarray], count: int, positive: bool
) -> np.ndarray:
    """Digest of ±(K_j(half) − half's t_j) over every j: H3's (+) equals H2's (−) iff the stage is right."""
    data, tags = half[:count], split_tags(layout, half[count:])  # type: ignore[arg-type]
    n = data[0].shape[-1]
    boolean = [data[k] for k in layout.boolean]
    arith = [data[k] for k in layout.arithmetic]
    words = []
    for key, per_helper in zip(keys, tags, strict=True):
        mapped_all = _apply(key, layout, boolean, arith, n)
        for i, (mapped, tag) in enumerate(zip(mapped_all, per_helper, strict=True)):
            if i == 0 and layout.boolean:
                words.append(mapped ^ tag)
            else:
                words.append(mapped - tag if positive else tag - mapped)
    return digest(step, words)
