"""Content safety evaluation: the packaged content + age policies over a labelled prompt set.

    python bench/content_eval.py [--prompts FILE] [--policy-dir DIR] [--misses] [--images] [--without BACKEND ...]
    python bench/content_eval.py --all [--misses]    # every prompt file of policies/examples/, one line each

Each line of the prompt set: {"prompt", "expect": block | teen | benign, "category", "lang", "trick"}.
  block:  must be refused for everyone (an adult account)          -> recall per category
  teen:   may be allowed for adults, must be refused for a 13-15 account -> recall per category (and how many
          are refused for adults too: by policy, e.g. a deadly challenge, or over-blocking to look at)
  benign: must pass for an adult and for a 13-15 account            -> false-positive rate
"Refused" is what the pipeline does: the content stage rejects or sends to review, or the age stage's
band does not allow the derived labels. Also prints p50/p99 time of the content stage's text check (the
shipped models, each prompt alone and in batches of 16 as a worker decides a Kafka batch), and
with --images the image check's time per frame (NudeNet, pinned to one core) at 256x256 and 704x480 and
what the policy's frame sampling costs per 5-second video at 24 fps. With the learned or semantic backend
in the policy, a file among their examples is judged by models trained on every other example file (leave
one file out); --without learned semantic judges with the other text backends alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consumers.age import AgeRules, Band, not_allowed_labels  # noqa: E402
from consumers.content import ContentBackends, ContentRules, ContentStage, learned_example_paths  # noqa: E402
from pipeline.content.learned import LearnedTextClassifier, examples_version, read_examples  # noqa: E402
from pipeline.content.semantic import MultilingualUSE, SemanticTextClassifier  # noqa: E402
from pipeline.media.assets import LocalAssetStore  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.worker.catalog import content_backends  # noqa: E402
from policies.loader import load_policy, policy_path  # noqa: E402
from schemas.models import GenerationRequest, Outcome, PipelineItem  # noqa: E402


def refused_for(verdict, band_rules) -> bool:
    if verdict.outcome is not Outcome.APPROVED:
        return True
    return bool(not_allowed_labels(["general", *verdict.details["labels"]], band_rules))


@dataclass
class Evaluation:
    """One prompt file's outcome: refusals per (expect, category), benign refusals per band."""

    rows: list[dict]
    hits: dict = field(default_factory=lambda: defaultdict(int))
    totals: dict = field(default_factory=lambda: defaultdict(int))
    misses: list = field(default_factory=list)
    benign_adult: int = 0
    benign_teen: int = 0
    benign_total: int = 0
    teen_level_adult: int = 0  # teen-restricted prompts refused for an adult too: over-blocking

    def recall(self, expect: str) -> tuple[int, int]:
        keys = [key for key in self.totals if key[0] == expect]
        return sum(self.hits[key] for key in keys), sum(self.totals[key] for key in keys)


def evaluate(stage: ContentStage, rows: list[dict], adult, teen) -> Evaluation:
    result = Evaluation(rows)
    for number, row in enumerate(rows):
        item = PipelineItem(request=GenerationRequest(request_id=f"e{number}", requester_account="a",
                                                      prompt=row["prompt"]))
        verdict = stage.decide(item)
        expect = row["expect"]
        if expect == "benign":
            result.benign_total += 1
            wrong_adult, wrong_teen = refused_for(verdict, adult), refused_for(verdict, teen)
            result.benign_adult += wrong_adult
            result.benign_teen += wrong_teen
            if wrong_adult or wrong_teen:
                result.misses.append((row, verdict))
            continue
        key = (expect, row["category"])
        result.totals[key] += 1
        ok = refused_for(verdict, adult if expect == "block" else teen)
        if expect == "teen" and refused_for(verdict, adult):
            result.teen_level_adult += 1  # also refused for adults: by policy (a deadly challenge) or over-blocking
        result.hits[key] += ok
        if not ok:
            result.misses.append((row, verdict))
    return result


class StagesLeavingOut:
    """The content stage for one prompt file. With the learned or semantic backend, a file they train on is
    judged by models trained on every other example file (leave one file out): a figure from a model that saw
    the prompts it is judged on would say nothing about prompts nobody tuned it to."""

    TRAINED = ("learned", "semantic")

    def __init__(self, content, backends, cache_dir: Path) -> None:
        self._content = content
        self._backends = backends
        self._cache_dir = cache_dir
        trained = set(self.TRAINED) & set(content.rules.text_backends)
        self._examples = learned_example_paths(content) if trained else []
        self._encoder = RememberingEncoder(MultilingualUSE())
        self.left_out = 0

    def __call__(self, path: Path) -> ContentStage:
        text = self._backends.text
        if path.resolve() in {example.resolve() for example in self._examples}:
            self.left_out += 1
            kept = [example for example in self._examples if example.resolve() != path.resolve()]
            text = [self._trained_without(backend, kept) for backend in text]
        return ContentStage("content", self._content, ContentBackends(text, None), LocalAssetStore(tempfile.mkdtemp()))

    def _trained_without(self, backend, kept: list[Path]):
        rules = self._content.rules
        if backend.name == "learned":
            return LearnedTextClassifier(read_examples(kept), rules.learned_review_at, examples_version(kept))
        if backend.name == "semantic":
            return SemanticTextClassifier(read_examples(kept), self._encoder, rules.semantic.thresholds(),
                                          examples_version(kept), self._cache_dir)
        return backend


class RememberingEncoder:
    """A sentence encoder that encodes each text once: every left-out model trains on nearly the same prompts."""

    def __init__(self, encoder) -> None:
        self._encoder = encoder
        self.name, self.version = encoder.name, encoder.version
        self._vectors: dict[str, object] = {}

    def encode(self, texts):
        import numpy as np

        missing = [text for text in dict.fromkeys(texts) if text not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self._encoder.encode(missing)))
        return np.stack([self._vectors[text] for text in texts])


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=Path, default=ROOT / "policies" / "examples" / "content_prompts.jsonl")
    parser.add_argument("--all", action="store_true",
                        help="one line per prompt file of policies/examples/ (content_prompts*.jsonl): run after "
                             "a lexicon change")
    parser.add_argument("--policy-dir", type=Path, default=None)
    parser.add_argument("--misses", action="store_true", help="print every prompt decided wrongly")
    parser.add_argument("--images", action="store_true", help="also time the image check per frame")
    parser.add_argument("--without", nargs="+", default=[], metavar="BACKEND",
                        help="leave these text backends out of the policy's (e.g. learned semantic: the lexicon alone)")
    args = parser.parse_args()

    settings = Settings(policy_dir=args.policy_dir)
    content = load_policy(policy_path("content", args.policy_dir), ContentRules, expected_stage="content")
    if args.without:
        content = replace(content, rules=content.rules.model_copy(
            update={"text_backends": [b for b in content.rules.text_backends if b not in args.without]}))
    age = load_policy(policy_path("age", args.policy_dir), AgeRules, expected_stage="age").rules
    backends = content_backends(settings, content)
    adult, teen = age.bands[Band.ADULT], age.bands[Band.TEEN_13_15]

    examples = sorted((ROOT / "policies" / "examples").glob("content_prompts*.jsonl"), key=in_number_order)
    files = examples if args.all else [args.prompts]
    stage_for = StagesLeavingOut(content, backends, settings.model_cache_dir)
    results = {}
    for path in files:
        stage = stage_for(path)
        for row in read_rows(files[0])[:20]:  # warm up
            stage.decide(PipelineItem(request=GenerationRequest(request_id="w", requester_account="a",
                                                                prompt=row["prompt"])))
        results[path] = evaluate(stage, read_rows(path), adult, teen)
    if stage_for.left_out:
        print(f"learned and semantic backends: each of {stage_for.left_out} example files judged by models trained "
              f"without it")
    if args.all:
        print_summary(results)
    else:
        print_report(results[args.prompts])
    shipped = ContentStage("content", content, ContentBackends(backends.text, None),
                           LocalAssetStore(tempfile.mkdtemp()))
    print_timings(shipped, [row["prompt"] for result in results.values() for row in result.rows])
    if args.images:
        image_timings(backends, content.rules)
    if args.misses:
        for result in results.values():
            for row, verdict in result.misses:
                print(f"MISS {row['expect']:<6} {row.get('category', '-'):<20} {row['prompt']!r} -> "
                      f"{verdict.outcome.value} {[r.code for r in verdict.reasons]} {verdict.details['labels']}")
    return 0


def in_number_order(path: Path) -> tuple[str, int]:
    """heldout2 before heldout10."""
    name = path.stem.rstrip("0123456789")
    return name, int(path.stem[len(name):] or 0)


def share(got: int, total: int) -> str:
    return f"{got}/{total} = {100 * got / total:.1f}%" if total else "-"


def print_report(result: Evaluation) -> None:
    rows = result.rows
    print(f"{len(rows)} prompts ({sum(r['expect'] == 'block' for r in rows)} blocked-for-everyone, "
          f"{sum(r['expect'] == 'teen' for r in rows)} teen-restricted, {result.benign_total} benign), "
          f"languages: {', '.join(sorted({r['lang'] for r in rows}))}")
    for expect, title in (("block", "blocked for everyone (adult account)"), ("teen", "refused for a 13-15 account")):
        got, total = result.recall(expect)
        if not total:  # a file of benign prompts only (or harmful ones of one kind)
            continue
        print(f"\n{title}: {share(got, total)}")
        for key in sorted(k for k in result.totals if k[0] == expect):
            print(f"  {key[1]:<22} {result.hits[key]:>3}/{result.totals[key]:<3} "
                  f"{100 * result.hits[key] / result.totals[key]:5.1f}%")
    teen_total = result.recall("teen")[1]
    if teen_total:
        print(f"teen-restricted prompts also refused for an adult: {share(result.teen_level_adult, teen_total)}")
    if result.benign_total:
        print(f"\nbenign refused: adult {share(result.benign_adult, result.benign_total)}, "
              f"13-15 {share(result.benign_teen, result.benign_total)}")


def print_summary(results: dict[Path, Evaluation]) -> None:
    print(f"{'file':<34} {'blocked for everyone':>22} {'refused for 13-15':>20} {'(and for adults)':>18} "
          f"{'benign refused adult':>22} {'benign refused 13-15':>22}")
    for path, result in results.items():
        print(f"{path.name:<34} {share(*result.recall('block')):>22} {share(*result.recall('teen')):>20} "
              f"{share(result.teen_level_adult, result.recall('teen')[1]):>18} "
              f"{share(result.benign_adult, result.benign_total):>22} {share(result.benign_teen, result.benign_total):>22}")


BATCH = 16
"""Prompts decided together in the timing of batches: a worker decides a Kafka batch with decide_many."""


def print_timings(stage: ContentStage, prompts: list[str]) -> None:
    """The shipped text check's time per prompt, alone and in batches (whose time is shared by its prompts, as
    the worker's metrics share it); each prompt's sentence vector is computed while it is timed."""
    def request(number: int, prompt: str) -> PipelineItem:
        return PipelineItem(request=GenerationRequest(request_id=f"t{number}", requester_account="a", prompt=prompt))

    for number, prompt in enumerate(prompts[:20]):  # warm up
        stage.decide(request(number, prompt))
    alone, together = [], []
    for number, prompt in enumerate(prompts):
        start = time.perf_counter()
        stage.decide(request(number, prompt))
        alone.append((time.perf_counter() - start) * 1000)
    for first in range(0, len(prompts), BATCH):
        batch = [request(first + n, prompt) for n, prompt in enumerate(prompts[first:first + BATCH])]
        start = time.perf_counter()
        stage.decide_many(batch)
        together += [(time.perf_counter() - start) * 1000 / len(batch)] * len(batch)
    for title, timings in (("alone", alone), (f"in batches of {BATCH}", together)):
        ordered = sorted(timings)
        print(f"text check per prompt over {len(ordered)} prompts, {title}: p50 {statistics.median(ordered):.2f} "
              f"ms, p99 {ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]:.2f} ms, max {ordered[-1]:.2f} ms")


def image_timings(backends, rules, repeats: int = 30) -> None:
    """NudeNet per frame on one core, on a real photo scaled to each size; the policy's cost per video."""
    import os

    import numpy as np
    from PIL import Image
    from skimage import data

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # before onnxruntime makes its threads
    classifier = backends.image()
    frames_per_video = min(len(range(0, 121, rules.frame_every)), rules.max_frames)
    for width, height in ((256, 256), (704, 480)):
        frame = np.asarray(Image.fromarray(data.astronaut()).resize((width, height)))
        classifier.classify(frame)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            classifier.classify(frame)
            times.append((time.perf_counter() - start) * 1000)
        per_frame = statistics.median(times)
        print(f"image check {width}x{height}: {per_frame:.1f} ms per frame (p50 of {repeats}, one core); "
              f"policy samples {frames_per_video} of 121 frames -> {per_frame * frames_per_video:.0f} ms per "
              f"5-second video")


if __name__ == "__main__":
    raise SystemExit(main())
