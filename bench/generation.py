"""Benchmark: generation throughput with GPU (or CPU) batching on vs off, in one run.

    python bench/generation.py [--requests 16] [--batch-size 8] [--model DIR_OR_HUB_ID] [--steps 4]

The same N compatible requests go through the generate stage (real diffusers pipeline, real
MP4 encoding and asset store) twice: batch size 1 (baseline) and --batch-size. Prints requests/s,
the fraction of wall time spent inside the pipeline call (device busy), process CPU use
(CPU time / wall time / cores) and the speed-up ratio. Without --model a tiny random LTX
pipeline is built first (no download); on a CUDA machine pass a real small model id.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consumers.generate import GenerateRules, GenerateStage  # noqa: E402
from pipeline.generation.generator import DiffusersVideoGenerator, GeneratorConfig  # noqa: E402
from pipeline.generation.tiny_generator import build_tiny_ltx  # noqa: E402
from pipeline.media.assets import LocalAssetStore  # noqa: E402
from pipeline.state.consent_registry import InMemoryConsentRegistry  # noqa: E402
from policies.loader import LoadedPolicy  # noqa: E402
from schemas.models import GenerationRequest, Outcome, PipelineItem  # noqa: E402


class TimedGenerator:
    """Wraps the real generator to measure time inside pipeline calls (the device's busy time)."""

    def __init__(self, inner: DiffusersVideoGenerator) -> None:
        self.inner = inner
        self.busy_seconds = 0.0

    def describe(self) -> dict:
        return self.inner.describe()

    def generate(self, jobs, deadline):
        started = time.perf_counter()
        try:
            return self.inner.generate(jobs, deadline)
        finally:
            self.busy_seconds += time.perf_counter() - started


def run(generator: DiffusersVideoGenerator, items: list[PipelineItem], rules: GenerateRules, store) -> dict:
    timed = TimedGenerator(generator)
    policy = LoadedPolicy(policy_id="bench", stage="generate", version="bench", path=Path("bench"), rules=rules)
    stage = GenerateStage(policy, timed, InMemoryConsentRegistry(), store)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    verdicts = []
    for start in range(0, len(items), rules.batch_size):  # what the worker hands the stage per poll
        verdicts.extend(stage.decide_batch(items[start:start + rules.batch_size]))
    wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start
    assert all(v.outcome is Outcome.APPROVED for v in verdicts), [v.reasons for v in verdicts]
    return {"requests_per_second": len(items) / wall, "wall_seconds": wall, "busy_fraction": timed.busy_seconds / wall,
            "cpu_use": cpu / wall / (os.cpu_count() or 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", help="diffusers model id or directory (default: a tiny random LTX pipeline)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--fps", type=int, default=8)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="trustreel-bench-generation-"))
    model = args.model or str(build_tiny_ltx(work / "tiny-ltx"))
    generator = DiffusersVideoGenerator(GeneratorConfig(model_id=model))
    generator.load()
    items = [PipelineItem(request=GenerationRequest(
        request_id=f"bench-{index}", requester_account="bench", prompt="a cat dances on the beach at sunset",
        duration_seconds=args.seconds, resolution={"width": args.width, "height": args.height}))
        for index in range(args.requests)]
    base = {"fps": args.fps, "steps": args.steps, "max_attempts": 1}
    run(generator, items[:2], GenerateRules(**base, batch_size=2), LocalAssetStore(work / "warmup"))
    print(f"model {model} on {generator.describe()['device']} ({generator.describe()['dtype']}), "
          f"{args.requests} requests of {args.width}x{args.height}, {args.seconds:g} s at {args.fps} fps, "
          f"{args.steps} steps")
    results = {}
    for label, size in (("batching off (batch 1)", 1), (f"batching on (batch {args.batch_size})", args.batch_size)):
        results[label] = run(generator, items, GenerateRules(**base, batch_size=size),
                             LocalAssetStore(work / f"assets-{size}"))
        figures = results[label]
        print(f"{label:28s} {figures['requests_per_second']:7.2f} req/s  wall {figures['wall_seconds']:6.1f} s  "
              f"pipeline busy {figures['busy_fraction']:.0%}  CPU use {figures['cpu_use']:.0%}")
    off, on = results.values()
    print(f"ratio on/off: {on['requests_per_second'] / off['requests_per_second']:.2f}x requests/s")


if __name__ == "__main__":
    main()
