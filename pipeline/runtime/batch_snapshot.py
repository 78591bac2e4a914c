"""One read per registry entry per batch: the state a batch of decisions sees.

    runtime: with batch_snapshot(requesters):  (in the worker thread that decides the batch)
                 stage.prepare_batch()          (e.g. publish waits for the consent feed to catch up)
                 for item in batch: stage.decide(item)
                     registry.get(x) -> remembered(("cameo", x), load) -> loaded once, then reused
                     standing(a)     -> on the first miss, every requester of the batch in one query
                                        (batch_requesters, remember)

Why: the consent, age and publish stages each look up the same cameos and accounts for
most requests of a batch; reading them once per batch instead of once per request was a
large share of the runtime's cost (bench/pipeline.py). Every decision of a batch then sees
the registries as they were when the batch began, which is what "decided together" means;
outside a batch (reviews, the CLI, tests) nothing is remembered.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Hashable, Iterator, TypeVar

T = TypeVar("T")

_current: ContextVar[dict[Hashable, Any] | None] = ContextVar("trustreel_batch_snapshot", default=None)
_REQUESTERS = ("batch", "requesters")


@contextmanager
def batch_snapshot(requesters: frozenset[str] = frozenset()) -> Iterator[None]:
    """Remember registry reads until the block ends (context-local: other threads are unaffected).
    `requesters`: the batch's requester accounts, so a per-account read can load all of them at once."""
    token = _current.set({_REQUESTERS: requesters})
    try:
        yield
    finally:
        _current.reset(token)


def batch_requesters() -> frozenset[str]:
    """The requester accounts of the batch being decided; empty outside a batch."""
    memo = _current.get()
    return memo[_REQUESTERS] if memo is not None else frozenset()


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
