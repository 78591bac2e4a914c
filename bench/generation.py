"""Benchmark: generation throughput, in one run.

    python bench/generation.py [--requests 16] [--batch-size 8] [--model DIR_OR_HUB_ID] [--steps 4]
    python bench/generation.py --full-ltx [--requests 6] [--dtype bfloat16] [--show-from-pipe-cast]

Default mode: the same N compatible requests go through the generate stage (real diffusers pipeline,
real MP4 encoding and asset store) twice: batch size 1 (baseline) and --batch-size. Prints requests/s,
the fraction of wall time spent inside the pipeline call (device busy), process CPU use
(CPU time / wall time / cores) and the speed-up ratio. Without --model a tiny random LTX
pipeline is built first (no download).

--full-ltx (a GPU): an LTX-Video pipeline at the released model's sizes with random weights, built on
the device from diffusers' default configs (no download), 704x480, 121 frames at 24 fps, 20 steps.
First diffusers' own call with the stage's arguments (the baseline), then the same requests through
the generate stage; prints per video the time in the pipeline call and in encoding + storing, the
stage's wall time per video against the baseline, and GPU busy (time inside pipeline calls / wall,
and NVML's utilisation sampled every 100 ms when nvidia-ml-py is installed). --show-from-pipe-cast
then times diffusers' call again after `LTXImageToVideoPipeline.from_pipe`, the cast #21 found.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consumers.generate import GenerateRules, GenerateStage  # noqa: E402
from pipeline.generation.generator import DiffusersVideoGenerator, GeneratorConfig  # noqa: E402
from pipeline.generation.tiny_generator import build_tiny_ltx, full_size_random_ltx  # noqa: E402
from pipeline.media.assets import LocalAssetStore  # noqa: E402
from pipeline.provenance.marking import MarkPlan  # noqa: E402
from pipeline.provenance.watermarks import InvisibleMarkStyle, VisibleMarkStyle  # noqa: E402
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


def run(generator: DiffusersVideoGenerator, items: list[PipelineItem], rules: GenerateRules, store,
        keep_verdicts: bool = False, marked: bool = True) -> dict:
    timed = TimedGenerator(generator)
    policy = LoadedPolicy(policy_id="bench", stage="generate", version="bench", path=Path("bench"), rules=rules)
    # As a worker builds it when a provenance stage follows: both marks drawn before the one encode (the styles'
    # defaults are the shipped provenance policy's; its loader's imports are not on the GPU machine).
    marks = MarkPlan("bench", "bench", VisibleMarkStyle(), InvisibleMarkStyle())
    stage = GenerateStage(policy, timed, InMemoryConsentRegistry(), store, marks=lambda: marks if marked else None)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    verdicts = []
    for start in range(0, len(items), stage.batch_size):  # what the worker hands the stage per poll
        verdicts.extend(stage.decide_batch(items[start:start + stage.batch_size]))
    wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start
    assert all(v.outcome is Outcome.APPROVED for v in verdicts), [v.reasons for v in verdicts]
    return {"requests_per_second": len(items) / wall, "wall_seconds": wall, "busy_fraction": timed.busy_seconds / wall,
            "cpu_use": cpu / wall / (os.cpu_count() or 1), "verdicts": verdicts if keep_verdicts else None}


class UtilisationSampler:
    """NVML's GPU utilisation every 100 ms on a thread (nvidia-ml-py); None where it is not installed."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "UtilisationSampler":
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no NVML: the in-call fraction is still printed
            return self

        def sample() -> None:
            while not self._stop.wait(0.1):
                self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) / 100 if self.samples else None


def full_ltx(args: argparse.Namespace) -> None:
    """The full-size random LTX-Video pipeline: diffusers' own call against the generate stage."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    pipe = full_size_random_ltx(device, args.dtype)
    config = GeneratorConfig(model_id="random-ltx-video-full-size", dtype=args.dtype,
                             attention_backend=args.attention_backend, compile_transformer=args.compile)
    generator = DiffusersVideoGenerator(config)
    generator.adopt(pipe, device, args.dtype)
    print(f"full-size random LTX-Video on {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'} "
          f"({args.dtype}), built in {time.perf_counter() - started:.1f} s; {args.width}x{args.height}, "
          f"{args.frames} frames, {args.steps} steps, batch {args.batch_size}, {args.batches_per_poll} GPU calls "
          f"per poll, attention {args.attention_backend or 'default'}, compile {args.compile}", flush=True)
    rules = GenerateRules(fps=24, steps=args.steps, max_attempts=1, batch_size=args.batch_size,
                          batches_per_poll=args.batches_per_poll, max_long_side=1280, max_short_side=720)
    seconds = (args.frames - 1) / 24
    items = [PipelineItem(request=GenerationRequest(
        request_id=f"bench-{index}", requester_account="bench", prompt="a cat dances on the beach at sunset",
        duration_seconds=seconds, resolution={"width": args.width, "height": args.height}))
        for index in range(args.requests)]
    arguments = {"prompt": "a cat dances on the beach at sunset", "negative_prompt": rules.negative_prompt,
                 "width": args.width, "height": args.height, "num_frames": args.frames,
                 "num_inference_steps": args.steps, "guidance_scale": rules.guidance_scale, "frame_rate": 24,
                 "max_sequence_length": 128, "output_type": "np"}

    def diffusers_call(label: str, repeats: int) -> float:
        times = []
        for repeat in range(repeats):
            generated = torch.Generator(device="cpu").manual_seed(repeat)
            began = time.perf_counter()
            with torch.inference_mode():
                pipe(**arguments, generator=generated)
            times.append(time.perf_counter() - began)
        print(f"{label}: {' '.join(f'{t:.2f}' for t in times)} s per video", flush=True)
        return min(times[1:] or times)

    diffusers_call("warm-up (diffusers' own call; with --compile, compiling)", 1)
    baseline = diffusers_call("diffusers' own call, same arguments", args.baseline_repeats)
    store = LocalAssetStore(Path(tempfile.mkdtemp(prefix="trustreel-bench-full-")))
    with UtilisationSampler() as sampler:
        figures = run(generator, items, rules, store, keep_verdicts=True, marked=not args.no_marks)
    for verdict in figures["verdicts"]:
        timings = verdict.details["timings"]
        print(f"  {verdict.details['batch']['requests']}: pipeline call {timings['video_seconds']:.2f} s, "
              f"marks + encode + store {timings['encode_seconds']:.2f} s ({verdict.details['video']['bytes']} bytes, "
              f"marked: {'marks' in verdict.details})")
    per_video = figures["wall_seconds"] / len(items)
    nvml = f", NVML utilisation {sampler.mean:.0%}" if sampler.mean is not None else ""
    print(f"generate stage: {per_video:.2f} s per video = {per_video / baseline:.2f}x diffusers' own call "
          f"({baseline:.2f} s); GPU busy {figures['busy_fraction']:.0%} of wall inside pipeline calls{nvml}",
          flush=True)
    if args.show_from_pipe_cast:
        from diffusers import LTXImageToVideoPipeline

        LTXImageToVideoPipeline.from_pipe(pipe)
        print(f"after from_pipe the transformer is {next(pipe.transformer.parameters()).dtype}", flush=True)
        diffusers_call("diffusers' own call after from_pipe (the old generator's state)", 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, help="default 16 (--full-ltx: 6)")
    parser.add_argument("--batch-size", type=int, help="default 8 (--full-ltx: 1)")
    parser.add_argument("--model", help="diffusers model id or directory (default: a tiny random LTX pipeline)")
    parser.add_argument("--steps", type=int, help="default 4 (--full-ltx: 20)")
    parser.add_argument("--width", type=int, help="default 64 (--full-ltx: 704)")
    parser.add_argument("--height", type=int, help="default 64 (--full-ltx: 480)")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--full-ltx", action="store_true", help="full-size random LTX-Video on the GPU")
    parser.add_argument("--frames", type=int, default=121, help="--full-ltx: frames per video")
    parser.add_argument("--dtype", default="bfloat16", choices=("float16", "bfloat16", "float32"))
    parser.add_argument("--attention-backend", help="--full-ltx: a diffusers attention backend")
    parser.add_argument("--compile", action="store_true", help="--full-ltx: torch.compile the transformer")
    parser.add_argument("--batches-per-poll", type=int, default=3)
    parser.add_argument("--baseline-repeats", type=int, default=3)
    parser.add_argument("--show-from-pipe-cast", action="store_true")
    parser.add_argument("--no-marks", action="store_true",
                        help="--full-ltx: leave the provenance marks to the provenance stage (as before)")
    args = parser.parse_args()
    defaults = ({"requests": 6, "batch_size": 1, "steps": 20, "width": 704, "height": 480} if args.full_ltx else
                {"requests": 16, "batch_size": 8, "steps": 4, "width": 64, "height": 64})
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.full_ltx:
        return full_ltx(args)

    work = Path(tempfile.mkdtemp(prefix="trustreel-bench-generation-"))
    model = args.model or str(build_tiny_ltx(work / "tiny-ltx"))
    generator = DiffusersVideoGenerator(GeneratorConfig(model_id=model))
    generator.load()
    items = [PipelineItem(request=GenerationRequest(
        request_id=f"bench-{index}", requester_account="bench", prompt="a cat dances on the beach at sunset",
        duration_seconds=args.seconds, resolution={"width": args.width, "height": args.height}))
        for index in range(args.requests)]
    base = {"fps": args.fps, "steps": args.steps, "max_attempts": 1, "batches_per_poll": 1}
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
