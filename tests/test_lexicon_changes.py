"""bench/lexicon_changes.py: after a lexicon edit, exactly the example prompts whose answer it changes."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from pipeline.content.lexicon import fold

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("lexicon_changes", ROOT / "bench" / "lexicon_changes.py")
tool = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tool  # its dataclass looks its module up while the module runs
_spec.loader.exec_module(tool)


def edited_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", copy)
    return copy


def test_a_new_phrase_lists_the_prompts_that_hold_it_and_no_others(tmp_path: Path) -> None:
    after = edited_copy(tmp_path)
    english = after / "lexicons" / "content" / "en.txt"
    english.write_text(english.read_text(encoding="utf-8") + "\ngambling | medium | grandmother, grandmothers\n",
                       encoding="utf-8")
    found = tool.changes(ROOT / "policies", after)
    assert found, "the examples hold grandmothers"
    assert all("grandmother" in change.prompt.lower() for change in found)
    assert all("gambling:medium" in change.after and "gambling:medium" not in change.before for change in found)
    assert not any(change.lost for change in found)


def test_a_removed_line_shows_the_harmful_prompts_it_now_misses(tmp_path: Path) -> None:
    after = edited_copy(tmp_path)
    for path in (after / "lexicons" / "content").glob("*.txt"):
        lines = path.read_text(encoding="utf-8").splitlines()
        path.write_text("\n".join(line for line in lines if not line.startswith("dangerous_acts | high | balconing"))
                        + "\n", encoding="utf-8")
    found = {change.prompt: change for change in tool.changes(ROOT / "policies", after)}
    balconing = found["jóvenes haciendo balconing desde un hotel"]
    assert balconing.expect == "block" and balconing.lost
    assert "dangerous_acts:high" in balconing.before and "dangerous_acts:high" not in balconing.after
    assert all("balcon" in fold(prompt) for prompt in found)  # balconing, or Spanish "de un balcón a otro"
