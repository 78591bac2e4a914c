"""Which labelled prompts a lexicon edit changes: the lexicon's answer on every example prompt, before and after.

    git archive HEAD policies | tar -x -C /tmp/before      # the committed policies, to compare against
    python bench/lexicon_changes.py /tmp/before/policies [--policy-dir policies]

Prints each prompt of the edited tree's policies/examples/ whose lexicon signals differ between the two
policy directories, with its label, then a count per label. A benign prompt that changed is a refusal to
look at; a harmful one that lost a category or severity is a new miss. Worth running after any edit, not
only a new phrase: phrases also match through their stems, so a word added at one severity can change how
another line reads the same stem ("firefight" is the stem of "firefighter"; a stem two lines share takes
the milder severity).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consumers.content import ContentRules, label_of  # noqa: E402
from pipeline.content.signals import Severity  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.worker.catalog import content_backends  # noqa: E402
from policies.loader import load_policy, policy_path  # noqa: E402


@dataclass(frozen=True)
class Change:
    prompt: str
    expect: str
    category: str | None
    before: list[str]  # "category:severity" the lexicon found, sorted
    after: list[str]

    @property
    def lost(self) -> bool:
        """Some category is gone or milder: for a harmful prompt, a new miss."""
        return any(_strongest(self.after, category) < rank for category, rank in _by_category(self.before).items())


def lexicon_of(policy_dir: Path):
    """The content policy's lexicon backend as a worker builds it, from the policy directory given."""
    content = load_policy(policy_path("content", policy_dir), ContentRules, expected_stage="content")
    lexicon_only = replace(content, rules=content.rules.model_copy(update={"text_backends": ["lexicon"]}))
    return content_backends(Settings(policy_dir=policy_dir), lexicon_only).text[0]


def changes(before_dir: Path, after_dir: Path) -> list[Change]:
    """Every example prompt (of `after_dir`/examples) whose lexicon labels differ between the two directories."""
    before, after = lexicon_of(before_dir), lexicon_of(after_dir)
    found = []
    for path in sorted((after_dir / "examples").glob("content_prompts*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            old, new = _labels(before, row["prompt"]), _labels(after, row["prompt"])
            if old != new:
                found.append(Change(row["prompt"], row["expect"], row.get("category"), old, new))
    return found


def _labels(lexicon, prompt: str) -> list[str]:
    return sorted(label_of(signal) for signal in lexicon.classify(prompt))


def _by_category(labels: list[str]) -> dict[str, int]:
    return {category: _strongest(labels, category) for category in {label.split(":")[0] for label in labels}}


def _strongest(labels: list[str], category: str) -> int:
    return max((Severity(label.split(":")[1]).rank for label in labels if label.split(":")[0] == category),
               default=-1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="the policy directory to compare against (e.g. the committed one)")
    parser.add_argument("--policy-dir", type=Path, default=ROOT / "policies", help="the edited policy directory")
    args = parser.parse_args()
    found = changes(args.before, args.policy_dir)
    for change in found:
        mark = "LOST " if change.expect != "benign" and change.lost else ""
        print(f"{mark}{change.expect:<6} {change.category or '-':<20} {change.prompt!r}: {change.before} -> {change.after}")
    counts = Counter(change.expect for change in found)
    print(f"{len(found)} prompts changed: " + (", ".join(f"{expect} {n}" for expect, n in sorted(counts.items()))
                                                 or "none"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
