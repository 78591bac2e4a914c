"""First runs of the held-out prompt sets, recomputed: today's content stage on prompts nobody tuned it to.

    python bench/content_first_runs.py [N ...] [--misses]    # default: held-outs 24 and later

Each held-out set is judged as on the day it was committed: with the lexicons and example files of the commit
before it (so no phrase rule was written for it and the learned and semantic models never trained on it), and
with today's code and content policy (backends, categories, margins). That is the honest figure for a change
to how the stage decides; `content_eval.py --all` judges each file by models trained without it, but by a
lexicon tuned on nearly every file. Needs the git history (a clone, not an archive). Sets 2-23 predate the
learned backend's examples and are left out by default; 27 holds teen-level and benign prompts only.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from content_eval import Evaluation, evaluate, in_number_order, share  # noqa: E402
from consumers.age import AgeRules, Band  # noqa: E402
from consumers.content import ContentBackends, ContentRules, ContentStage  # noqa: E402
from pipeline.media.assets import LocalAssetStore  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.worker.catalog import content_backends  # noqa: E402
from policies.loader import load_policy, policy_path  # noqa: E402

FIRST_WITH_EXAMPLES = 24
"""The first held-out set written after the example files the learned and semantic backends train on."""


def git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=True).stdout


def committed_in(path: str) -> str:
    """The commit that added the file."""
    return git("log", "--diff-filter=A", "--format=%H", "--", path).decode().split()[-1]


def policies_before(commit: str, into: Path) -> Path:
    """Today's policies/ with the lexicons and examples of the commit before `commit`."""
    policies = into / "policies"
    shutil.copytree(ROOT / "policies", policies)
    for folder in ("lexicons", "examples"):
        shutil.rmtree(policies / folder)
        with tarfile.open(fileobj=io.BytesIO(git("archive", f"{commit}^", f"policies/{folder}"))) as archive:
            archive.extractall(into, filter="data")
    return policies


def first_run(number: int, adult, teen) -> tuple[str, Evaluation]:
    """The set's commit, and how today's stage judged it with that commit's lexicons and examples."""
    path = f"policies/examples/content_prompts_heldout{number}.jsonl"
    commit = committed_in(path)
    rows = [json.loads(line) for line in git("show", f"{commit}:{path}").decode().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as folder:
        policies = policies_before(commit, Path(folder))
        content = load_policy(policy_path("content", policies), ContentRules, expected_stage="content")
        text = content_backends(Settings(policy_dir=policies), content).text
        stage = ContentStage("content", content, ContentBackends(text, None), LocalAssetStore(Path(folder)))
        return commit, evaluate(stage, rows, adult, teen)


def together(results: list[Evaluation]) -> Evaluation:
    total = Evaluation([row for result in results for row in result.rows])
    for result in results:
        for key in result.totals:
            total.totals[key] += result.totals[key]
            total.hits[key] += result.hits[key]
        total.misses += result.misses
        total.benign_adult += result.benign_adult
        total.benign_teen += result.benign_teen
        total.benign_total += result.benign_total
        total.teen_level_adult += result.teen_level_adult
    return total


def summary(result: Evaluation) -> str:
    return (f"blocked for everyone {share(*result.recall('block')):>18}   "
            f"refused for 13-15 {share(*result.recall('teen')):>16}   "
            f"benign refused adult {share(result.benign_adult, result.benign_total):>16}, "
            f"13-15 {share(result.benign_teen, result.benign_total)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", type=int, help="held-out numbers (default: 24 and later)")
    parser.add_argument("--misses", action="store_true", help="print every prompt decided wrongly")
    args = parser.parse_args()
    age = load_policy(policy_path("age"), AgeRules, expected_stage="age").rules
    adult, teen = age.bands[Band.ADULT], age.bands[Band.TEEN_13_15]
    found = sorted((ROOT / "policies" / "examples").glob("content_prompts_heldout*.jsonl"), key=in_number_order)
    numbers = args.sets or [n for n in (in_number_order(path)[1] for path in found) if n >= FIRST_WITH_EXAMPLES]
    results = []
    for number in numbers:
        commit, result = first_run(number, adult, teen)
        results.append(result)
        print(f"held-out {number:<3} {commit[:7]}  {summary(result)}", flush=True)
    total = together(results)
    print(f"all {len(numbers)} sets, {len(total.rows)} prompts: {summary(total)}")
    if args.misses:
        for row, verdict in total.misses:
            print(f"MISS {row['expect']:<6} {row.get('category', '-'):<20} {row['prompt']!r} -> "
                  f"{verdict.outcome.value} {verdict.details['labels']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
