"""One read per registry entry per batch: the state a batch of decisions sees.

    runtime: with batch_snapshot(requesters, cameos):  (in the worker thread that decides the batch)
                 stage.prepare_batch()          (e.g. publish waits for the consent feed to catch up)
                 for item in batch: stage.decide(item)
                     cameos.get(x)   -> remembered(("cameo", x), load) -> on the first miss, every cameo
                                        of the batch in one set of queries (batch_cameos, remember)
                     accounts.get(a) -> the same for every requester of the batch (batch_requesters) and
                                        every account the batch's cameos named (expect_reads: their owners)
                     standing(a)     -> the same, strikes and sanctions of every requester

Why: the consent, age and publish stages each look up the same cameos and accounts for
most requests of a batch; reading them once per batch instead of once per request was a
large share of the runtime's cost (bench/pipeline.py). Every decision of a batch then sees
the registries as they were when the batch began, which is what "decided together" means;
outside a batch (reviews, the CLI, tests) nothing is remembered.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Hashable, Iterable, Iterator, TypeVar

T = TypeVar("T")

_current: ContextVar[dict[Hashable, Any] | None] = ContextVar("trustreel_batch_snapshot", default=None)
_REQUESTERS = ("batch", "requesters")
_CAMEOS = ("batch", "cameos")
ACCOUNT, CAMEO = "account", "cameo"
"""The registries' kinds of entries (the first half of a remembered key)."""


@contextmanager
def batch_snapshot(requesters: frozenset[str] = frozenset(), cameos: frozenset[str] = frozenset()) -> Iterator[None]:
    """Remember registry reads until the block ends (context-local: other threads are unaffected).
    `requesters`, `cameos`: the batch's requester accounts and cameos, so that a read of one loads all."""
    token = _current.set({_REQUESTERS: requesters, _CAMEOS: cameos})
    try:
        yield
    finally:
        _current.reset(token)


def batch_requesters() -> frozenset[str]:
    """The requester accounts of the batch being decided; empty outside a batch."""
    memo = _current.get()
    return memo[_REQUESTERS] if memo is not None else frozenset()


def batch_cameos() -> frozenset[str]:
    """The cameos the batch being decided names; empty outside a batch."""
    memo = _current.get()
    return memo[_CAMEOS] if memo is not None else frozenset()


def expect_reads(kind: str, keys: Iterable[str]) -> None:
    """Entries of `kind` the batch will read that its messages do not name, learned from another read (the
    owner account of each cameo): the next miss of that kind loads them with the rest. Nothing outside a batch."""
    memo = _current.get()
    if memo is not None:
        memo.setdefault(("batch", "expected", kind), set()).update(keys)


def remembered_with_batch(kind: str, key: str, batch: frozenset[str],
                          load_many: Callable[[list[str]], dict[str, T]]) -> T | None:
    """`(kind, key)` from the snapshot; on a miss, `load_many` reads the key with the rest of its batch (and
    what expect_reads named) at once, and each is remembered (None for the ones it did not find)."""
    memo = _current.get()
    if memo is None:
        return load_many([key]).get(key)
    if (kind, key) in memo:
        return memo[(kind, key)]
    others = batch | memo.get(("batch", "expected", kind), set())
    wanted = sorted({key} | {other for other in others if (kind, other) not in memo})
    loaded = load_many(wanted)
    for other in wanted:
        remember((kind, other), loaded.get(other))
    return loaded.get(key)


def remember(key: Hashable, value: Any) -> None:
    """Keep `value` for `key` until the batch ends, unless something is kept already (nothing outside a batch)."""
    memo = _current.get()
    if memo is not None:
        memo.setdefault(key, value)


def remembered(key: Hashable, load: Callable[[], T]) -> T:
    """`load()` once per snapshot for `key`; every call when no snapshot is open."""
    memo = _current.get()
    if memo is None:
        return load()
    if key not in memo:
        memo[key] = load()
    return memo[key]
