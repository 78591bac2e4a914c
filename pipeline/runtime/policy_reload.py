"""Hot policy reload and shadow policies, around any stage.

    every decision (at most once per check interval): fingerprint <stage>.yaml, <stage>.shadow.yaml, lexicons/
      unchanged -> decide with the current stage
      changed   -> build the stage (and its shadow twin) from the new files
                     ok     -> use them from this decision on (the new version is recorded with each decision)
                     error  -> log it, keep the old stage; try again only when the files change again
    with a shadow twin: its verdict is recorded in details["shadow"]; the enforced verdict decides
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Callable

from pipeline.runtime.stage import BatchStage, Stage, Verdict
from policies.loader import policy_path, shadow_policy_path
from schemas.models import PipelineItem

log = logging.getLogger("trustreel.policy")

StageFactory = Callable[[], Stage]


class ReloadingStage:
    def __init__(self, name: str, policy_dir: Path | None, build: StageFactory,
                 build_shadow: StageFactory | None, check_interval_seconds: float = 1.0,
                 initial: Stage | None = None) -> None:
        self.name = name
        self._policy_dir = policy_dir
        self._build = build
        self._build_shadow = build_shadow
        self._interval = check_interval_seconds
        first = initial if initial is not None else build()
        self._policy_name = first.policy.stage  # the file it reads: likeness-post reads likeness.yaml
        self._fingerprint = self._current_fingerprint()
        self._stage = first
        self._shadow = self._shadow_or_none()
        self._next_check = time.monotonic() + self._interval

    @property
    def policy(self):
        return self._stage.policy

    @property
    def shadow_policy(self):
        return self._shadow.policy if self._shadow is not None else None

    def prepare_batch(self) -> None:
        self.reload_if_changed()
        prepare = getattr(self._stage, "prepare_batch", None)
        if prepare is not None:
            prepare()

    def decide(self, item: PipelineItem) -> Verdict:
        self.reload_if_changed()
        stage, shadow = self._stage, self._shadow
        return self._with_shadow(shadow, item, stage.decide(item))

    @property
    def decide_many(self) -> Callable[[list[PipelineItem]], list[Verdict | Exception]] | None:
        """The stage's own batch decision when it has one (age: the batch's cap charges in one transaction);
        None: the runtime decides one item at a time."""
        return self._decide_many if hasattr(self._stage, "decide_many") else None

    def _decide_many(self, items: list[PipelineItem]) -> list[Verdict | Exception]:
        self.reload_if_changed()
        stage, shadow = self._stage, self._shadow
        decided = stage.decide_many(items) if hasattr(stage, "decide_many") else [stage.decide(i) for i in items]
        return [outcome if isinstance(outcome, Exception) else self._with_shadow(shadow, item, outcome)
                for item, outcome in zip(items, decided, strict=True)]

    def _with_shadow(self, shadow: Stage | None, item: PipelineItem, verdict: Verdict) -> Verdict:
        """The enforced verdict, with what the shadow policy would have said in its details."""
        if shadow is None:
            return verdict
        try:
            twin = shadow.decide(item)
            record: dict[str, Any] = {"policy_id": shadow.policy.policy_id, "policy_version": shadow.policy.version,
                                      "outcome": twin.outcome.value, "reasons": [r.code for r in twin.reasons],
                                      "differs": twin.outcome != verdict.outcome}
        except Exception as exc:  # a shadow policy can never break enforcement
            log.exception("shadow policy of %s failed", self.name)
            record = {"policy_id": shadow.policy.policy_id, "policy_version": shadow.policy.version,
                      "error": f"{type(exc).__name__}: {exc}"}
        return Verdict(verdict.outcome, verdict.reasons, {**verdict.details, "shadow": record}, verdict.assets)

    def reload_if_changed(self) -> bool:
        """True when new policy files were taken into use."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self._interval
        fingerprint = self._current_fingerprint()
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint  # a refused file is not retried until it changes again
        old = self._stage.policy
        try:
            stage = self._build()
            shadow = self._shadow_or_none(raise_errors=True)
        except Exception as exc:
            log.error("refusing the changed policy for stage %s; keeping %s@%s: %s", self.name, old.policy_id,
                      old.version[:12], exc)
            return False
        self._stage, self._shadow = stage, shadow
        log.warning("stage %s now enforces %s@%s%s", self.name, stage.policy.policy_id, stage.policy.version[:12],
                    f" (shadow {shadow.policy.policy_id}@{shadow.policy.version[:12]})" if shadow else "")
        return True

    def _shadow_or_none(self, raise_errors: bool = False) -> Stage | None:
        if self._build_shadow is None or not shadow_policy_path(self.name, self._policy_dir).exists():
            return None
        try:
            return self._build_shadow()
        except Exception as exc:
            if raise_errors:
                raise
            log.error("ignoring the shadow policy for stage %s: %s", self.name, exc)
            return None

    def _current_fingerprint(self) -> str:
        enforced = policy_path(self._policy_name, self._policy_dir)
        files = [enforced, shadow_policy_path(self.name, self._policy_dir)]
        lexicons = enforced.parent / "lexicons"
        if lexicons.is_dir():
            files.extend(sorted(path for path in lexicons.rglob("*") if path.is_file()))
        digest = hashlib.sha256()
        for path in files:
            digest.update(str(path).encode())
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"<absent>")
        return digest.hexdigest()


class ReloadingBatchStage(ReloadingStage):
    """The same, for stages that decide batches (no shadow twin: they have side effects)."""

    @property
    def batch_size(self) -> int:
        return self._stage.batch_size

    @property
    def batch_wait_seconds(self) -> float:
        return self._stage.batch_wait_seconds

    def decide_batch(self, items: list[PipelineItem]) -> list[Verdict]:
        self.reload_if_changed()
        return self._stage.decide_batch(items)


def reloading(name: str, policy_dir: Path | None, build: StageFactory, build_shadow: StageFactory | None,
              check_interval_seconds: float = 1.0) -> ReloadingStage:
    """Wrap a stage; batch stages keep their batch interface (and get no shadow twin: they have side effects)."""
    first = build()
    if isinstance(first, BatchStage):
        return ReloadingBatchStage(name, policy_dir, build, None, check_interval_seconds, initial=first)
    return ReloadingStage(name, policy_dir, build, build_shadow, check_interval_seconds, initial=first)
