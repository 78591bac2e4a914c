"""Group generation jobs into GPU batches: only jobs with the same RenderSpec share a pipeline call.

    queued jobs (arrival order) --group by spec--> [[a1, a2, a3], [a4], [b1, b2]]   (each <= max_size)

Arrival order is kept inside each group and groups are ordered by their first job, so a
request never waits behind a later one of its own kind.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

from pipeline.generation.generator import GenerationJob

JobT = TypeVar("JobT", bound=GenerationJob)


def compatible_batches(jobs: Sequence[JobT], max_size: int) -> list[list[JobT]]:
    if max_size < 1:
        raise ValueError("a batch holds at least one job")
    groups: dict[object, list[list[JobT]]] = {}
    order: list[list[JobT]] = []
    for job in jobs:
        batches = groups.setdefault(job.spec, [])
        if not batches or len(batches[-1]) >= max_size:
            batch: list[JobT] = []
            batches.append(batch)
            order.append(batch)
        batches[-1].append(job)
    return order
