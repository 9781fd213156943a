"""Which sequence id a new sequence takes, so that the running ones stay consecutive.

With a split KV cache (a stream per sequence id), llama.cpp cuts each batch into
micro-batches of consecutive sequence ids (`split_equal`, sequential), and every micro-batch
is one more pass over the weights. Eight sequences on ids 0-7, batched in id order, decode in
one pass; spread over ids 0, 1, 3, 4, 6, 7, 9, 10 they take four, and the step nearly twice
as long (36 against 69 ms on the CPU here; on a GPU each pass reads every weight again). So:

- the batch lists its tokens in sequence-id order (the scheduler's `_fill`);
- a new sequence takes an id that leaves the fewest runs of consecutive running ids: usually
  the hole a finished sequence left, or the id next to the block;
- a cached prefix held by that id moves out of the way, to a free id or in place of an older
  entry, rather than being dropped: a copy of the cells it occupies (about a millisecond for
  a few hundred tokens), once, where a split block costs every step.

Pure bookkeeping: the scheduler makes the llama.cpp calls the returned `Placement` asks for.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass


def runs(ids: Iterable[int]) -> int:
    """How many runs of consecutive integers `ids` form (micro-batches for those ids)."""
    ordered = sorted(ids)
    return sum(1 for i, x in enumerate(ordered) if i == 0 or x != ordered[i - 1] + 1)


def fewest_runs(running: Collection[int], candidates: Iterable[int]) -> list[int]:
    """The candidates that, added to `running`, leave the fewest runs (in the given order)."""
    scored = [(runs([*running, c]), c) for c in candidates]
    if not scored:
        return []
    low = min(score for score, _ in scored)
    return [c for score, c in scored if score == low]


@dataclass(frozen=True)
class Placement:
    seq_id: int  # the id the new sequence takes
    take_over: bool  # it takes over the source's cached cells in place (no copy)
    move: tuple[int, int] | None = None  # (from, to): a cached entry moved out of the way first
    evict: tuple[int, ...] = ()  # cached entries dropped (their ids' cells to be cleared)


def place(running: Collection[int], free: Collection[int], cached_lru: list[int],
          source: int, take_over: bool) -> Placement:
    """Choose the id for a new sequence.

    `cached_lru`: ids of cached entries, least recently used first. `source`: the id whose
    prefix the new sequence reuses (-1: none); `take_over`: that source is a cached entry the
    new prompt extends whole (the next turn of its conversation), so taking its id needs no
    copy, if the id suits the block.
    """
    candidates = [i for i in (*free, *cached_lru) if i not in running]
    best = fewest_runs(running, candidates)
    if take_over and source in best:
        return Placement(source, True)
    free_best = [i for i in best if i in free]
    if free_best:
        return Placement(free_best[0], False)
    # Every best id holds a cached entry: the least recently used of them gives way.
    order = {seq_id: n for n, seq_id in enumerate(cached_lru)}
    target = min(best, key=order.__getitem__)
    # Its entry is kept elsewhere if a free id or an older entry's id can take it.
    homes = [i for i in free if i != target]
    older = [i for i in cached_lru[:order[target]] if i != source]
    if homes:
        return Placement(target, False, move=(target, homes[0]))
    if older:
        return Placement(target, False, move=(target, older[0]), evict=(older[0],))
    return Placement(target, False, evict=(target,))


@dataclass(frozen=True)
class Move:
    """One step of a compaction, applied in order.

    kind "sequence": the running sequence on `src` moves to `dst` (whose cells it replaces);
    "entry": the cached entry on `src` moves to `dst`; "evict": the entry on `src` is dropped.
    """

    kind: str
    src: int
    dst: int = -1


def compaction(running: Collection[int], n_ids: int, free: Collection[int],
               cached_lru: list[int]) -> list[Move]:
    """Moves that put the running sequences on consecutive ids; [] when they already are.

    Placement keeps the block whole as sequences come, but ends leave holes that no new
    sequence may fill (an idle queue), and a block can grow at both ends. The window of
    len(running) ids that already holds the most running sequences is kept; each sequence
    outside it moves into a hole of it (a copy of its cells). A cached entry in such a hole
    goes to a free id outside the window (ids just vacated count) or is dropped.
    """
    count = len(running)
    if count < 2 or runs(running) == 1:
        return []
    start = max(range(n_ids - count + 1),
                key=lambda a: (sum(1 for r in running if a <= r < a + count), -a))
    window = range(start, start + count)
    cached = set(cached_lru)
    homes = sorted(i for i in free if i not in window)
    moves: list[Move] = []
    holes = [i for i in window if i not in running]
    # Entries outside the window, least recently used first: one older than a displaced
    # entry gives way to it.
    outside = [i for i in cached_lru if i not in window]
    rank = {seq_id: n for n, seq_id in enumerate(cached_lru)}
    for src, dst in zip(sorted(r for r in running if r not in window), holes, strict=True):
        if dst in cached:
            if homes:
                moves.append(Move("entry", dst, homes.pop(0)))
            elif outside and rank[outside[0]] < rank[dst]:
                older = outside.pop(0)
                moves += [Move("evict", older), Move("entry", dst, older)]
            else:
                moves.append(Move("evict", dst))
        moves.append(Move("sequence", src, dst))
        homes.append(src)  # free once its sequence has moved: a later entry may go there
    return moves
