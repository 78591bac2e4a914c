"""One read per registry entry per batch: the state a batch of decisions sees.

    runtime: with batch_snapshot():            (in the worker thread that decides the batch)
                 stage.prepare_batch()          (e.g. publish waits for the consent feed to catch up)
                 for item in batch: stage.decide(item)
                     registry.get(x) -> remembered(("cameo", x), load) -> loaded once, then reused

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


@contextmanager
def batch_snapshot() -> Iterator[None]:
    """Remember registry reads until the block ends (context-local: other threads are unaffected)."""
    token = _current.set({})
    try:
        yield
    finally:
        _current.reset(token)


def remembered(key: Hashable, load: Callable[[], T]) -> T:
    """`load()` once per snapshot for `key`; every call when no snapshot is open."""
    memo = _current.get()
    if memo is None:
        return load()
    if key not in memo:
        memo[key] = load()
    return memo[key]
