"""bench/content_first_runs.py: a held-out set is judged with the lexicons and examples of the commit before it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("content_first_runs", ROOT / "bench" / "content_first_runs.py")
tool = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tool
_spec.loader.exec_module(tool)

HELD_OUT = "policies/examples/content_prompts_heldout44.jsonl"


def has_history() -> bool:
    found = subprocess.run(["git", "-C", str(ROOT), "log", "--format=%H", "--", HELD_OUT], capture_output=True)
    return found.returncode == 0 and bool(found.stdout.strip())


@pytest.mark.skipif(not has_history(), reason="needs the git history of the checkout (a clone, not an archive)")
def test_a_held_out_never_meets_its_own_prompts_or_the_rules_written_after_it(tmp_path: Path) -> None:
    commit = tool.committed_in(HELD_OUT)
    policies = tool.policies_before(commit, tmp_path)
    examples = {path.name for path in (policies / "examples").glob("*.jsonl")}
    assert "content_prompts_heldout44.jsonl" not in examples and "content_prompts_heldout43.jsonl" in examples
    for path in (policies / "lexicons" / "content").glob("*.txt"):
        then = tool.git("show", f"{commit}^:policies/lexicons/content/{path.name}")
        assert path.read_bytes() == then
    # Everything else is today's policy: the margins and backends being judged.
    assert (policies / "content.yaml").read_bytes() == (ROOT / "policies" / "content.yaml").read_bytes()


def test_the_sets_add_up_to_one_figure() -> None:
    teen, block = tool.Evaluation([{"prompt": "t"}, {"prompt": "b1"}]), tool.Evaluation([{"prompt": "b2"}])
    teen.totals[("teen", "drugs")] = teen.hits[("teen", "drugs")] = 1
    teen.benign_total, teen.benign_teen = 1, 1
    block.totals[("block", "hate")], block.misses = 1, [({"prompt": "b2"}, None)]
    total = tool.together([teen, block])
    assert total.recall("teen") == (1, 1) and total.recall("block") == (0, 1) and len(total.rows) == 3
    assert (total.benign_total, total.benign_teen, total.benign_adult, len(total.misses)) == (1, 1, 0, 1)
    line = " ".join(tool.summary(total).split())
    assert line == ("blocked for everyone 0/1 = 0.0% refused for 13-15 1/1 = 100.0% "
                    "benign refused adult 0/1 = 0.0%, 13-15 1/1 = 100.0%")
