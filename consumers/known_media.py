"""Known-media stage: input media and generated frames against hash banks; rights holders' works.

Before generation ("known-media"): each input image (with its rotations and mirrors) and sampled input
video frames through every hash bank; the prompt through the rights holders' names and aliases.
After generation ("known-media-post"): sampled frames of the generated video through every bank.

    a match in a bank whose action is ......  block -> reject, naming the bank (taken_down: a video
                                                       taken off the feed, coming back)
                                               review -> a person decides
                                               attribute -> allowed; the entry is named in the manifest
                                               rights -> the work's holder decides, as for its name:
    a protected work (by name, or by reference image), by its holder's choice:
                                               blocked -> reject, naming the work and its holder
                                               review -> a person decides
                                               allowed -> allowed; provenance names the work and holder
    media that cannot be read ................ reject (never a pass)

Hashes below the policy's quality are not matched (PDQ is unreliable on flat images); each decision
records every match: bank, entry, content id and distance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.hashing.banks import TAKEN_DOWN, BankMatch, BankSearch
from pipeline.hashing.signals import SignalType
from pipeline.hashing.video import Sampling, media_hashes
from pipeline.media.assets import AssetIntegrityError, AssetStore
from pipeline.media.frames import UnreadableMedia
from pipeline.runtime.stage import Verdict, media_unreadable, no_generated_video
from pipeline.state.rights_registry import ProtectedWork, RightsNames
from policies.loader import LoadedPolicy
from schemas.models import MediaReference, PipelineItem, Reason

KNOWN_MEDIA_STAGES = ("known-media", "known-media-post")
MATCHES_RECORDED = 100  # the first found (each media nearest first): a long video against a big bank could bloat the row


class KnownMediaRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signal_type: Literal["pdq"] = "pdq"
    min_quality: int = Field(default=50, ge=0, le=100, description="Hashes below this quality are not matched")
    dedup_distance: int = Field(default=4, ge=0, le=64, description="Consecutive frames this close count once")
    image_variants: bool = Field(default=True, description="Also match input images' rotations and mirrors")
    input_frame_every: int = Field(default=12, ge=1, description="Input videos: every Nth frame is hashed")
    input_max_frames: int = Field(default=60, ge=1, le=10_000)
    frame_every: int = Field(default=6, ge=1, description="Generated videos: every Nth frame is hashed")
    max_frames: int = Field(default=60, ge=1, le=10_000)
    match_rights_names: bool = Field(default=True, description="Match protected works' names in prompts")
    rights_min_alias_length: int = Field(default=3, ge=1)
    rights_allow_list: list[str] = Field(default_factory=list,
                                         description="Common words never matched as a work's alias alone")

    def input_sampling(self) -> Sampling:
        return Sampling(self.input_frame_every, self.input_max_frames, self.min_quality, self.dedup_distance)

    def output_sampling(self) -> Sampling:
        return Sampling(self.frame_every, self.max_frames, self.min_quality, self.dedup_distance)


def attributions_of(item: PipelineItem) -> list[dict[str, Any]]:
    """What the known-media stages allowed with attribution (a reviewed use included), for the manifest."""
    found: dict[str, dict[str, Any]] = {}
    for decision in item.decisions:
        if decision.stage in KNOWN_MEDIA_STAGES:
            for entry in decision.details.get("attributions", []):
                found.setdefault(entry.get("work_id") or f"{entry.get('bank')}:{entry.get('content_id')}", entry)
    return list(found.values())


@dataclass
class _Findings:
    blocked: dict[str, Reason] = field(default_factory=dict)
    reviewed: dict[str, Reason] = field(default_factory=dict)
    attributions: dict[str, dict[str, Any]] = field(default_factory=dict)
    matches: list[dict[str, Any]] = field(default_factory=list)
    hashed: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


class KnownMediaStage:
    def __init__(self, name: str, policy: LoadedPolicy[KnownMediaRules], signal: SignalType,
                 search: BankSearch, rights: Callable[[], RightsNames], assets: AssetStore) -> None:
        if name not in KNOWN_MEDIA_STAGES:
            raise ValueError(name)
        self.name = name
        self.policy = policy
        self._signal = signal
        self._search = search
        self._rights = rights
        self._assets = assets

    @property
    def after_generation(self) -> bool:
        return self.name == "known-media-post"

    def decide(self, item: PipelineItem) -> Verdict:
        rules = self.policy.rules
        findings = _Findings()
        self._search.refresh()
        rights = self._rights()
        rights.refresh()
        if self.after_generation:
            video = item.assets.get("video")
            if video is None:
                return no_generated_video()
            self._check_media(video, rules.output_sampling(), False, "the generated video", rights, findings)
        else:
            if rules.match_rights_names:
                for work, match in rights.find(item.request.prompt):
                    self._judge_work(work, {"in": "prompt", "alias": match.alias}, findings)
            for number, reference in enumerate(item.request.input_media, start=1):
                self._check_media(reference, rules.input_sampling(), rules.image_variants,
                                  f"input media {number}", rights, findings)
        return self._verdict(findings)

    def _check_media(self, reference: MediaReference, sampling: Sampling, variants: bool, what: str,
                     rights: RightsNames, findings: _Findings) -> None:
        try:
            hashes = media_hashes(self._signal, self._assets.get(reference), reference.media_type, sampling,
                                  with_variants=variants)
        except (AssetIntegrityError, UnreadableMedia) as problem:
            findings.unreadable.append(str(problem))
            return
        findings.hashed.append({"media": reference.sha256[:16]} | hashes.record())
        queries, frames = [], []
        for kept in hashes.kept:
            for value in (kept.hash, *kept.variants):
                queries.append(value.value)
                frames.append(kept.frame)
        seen: set[tuple[str, str]] = set()
        for match in self._search.search(queries):
            findings.matches.append(match.record() | {"media": reference.sha256[:16], "frame": frames[match.query]})
            if (match.bank, match.content_id) in seen:
                continue  # nearest first: one judgement per matched item
            seen.add((match.bank, match.content_id))
            self._judge_match(match, what, rights, findings)

    def _judge_match(self, match: BankMatch, what: str, rights: RightsNames, findings: _Findings) -> None:
        policy = self.policy.policy_id
        if match.action == "rights":
            work = rights.work(match.content_id)
            if work is not None:
                self._judge_work(work, {"in": "media", "bank": match.bank, "distance": match.distance}, findings)
            return
        key = f"{match.bank}:{match.content_id}"
        if match.action == "block":
            findings.blocked.setdefault(match.bank, Reason(
                code="known_media_taken_down" if match.bank == TAKEN_DOWN else "known_media_match",
                message=(f"{what.capitalize()} matches a video that was taken off the feed (hash bank {match.bank})"
                         if match.bank == TAKEN_DOWN else
                         f"{what.capitalize()} matches known media in hash bank {match.bank}")
                        + f", which may not be used under policy {policy}."))
        elif match.action == "review":
            findings.reviewed.setdefault(match.bank, Reason(
                code="known_media_review",
                message=f"{what.capitalize()} matches media in hash bank {match.bank}: a person will check it "
                        f"under policy {policy}."))
        else:
            findings.attributions.setdefault(key, {"bank": match.bank, "content_id": match.content_id,
                                                   "note": match.note})

    def _judge_work(self, work: ProtectedWork, where: dict[str, Any], findings: _Findings) -> None:
        findings.matches.append({"work_id": work.work_id, "choice": work.choice} | where)
        described = f"{work.kind} '{work.name}' of {work.holder_name}"
        if work.choice == "blocked":
            findings.blocked.setdefault(f"work:{work.work_id}", Reason(
                code="rights_blocked", message=f"This request uses the {described}, whose rights holder does not "
                                               f"allow it in videos."))
        else:
            if work.choice == "review":
                findings.reviewed.setdefault(f"work:{work.work_id}", Reason(
                    code="rights_review", message=f"This request uses the {described}: a person will check it."))
            findings.attributions.setdefault(work.work_id, work.record())  # named in the manifest if it publishes

    def _verdict(self, findings: _Findings) -> Verdict:
        details = {"matches": findings.matches[:MATCHES_RECORDED], "matches_total": len(findings.matches),
                   "hashed": findings.hashed, "attributions": list(findings.attributions.values())}
        reasons = list(findings.blocked.values()) + [media_unreadable(p) for p in findings.unreadable]
        if reasons:
            return Verdict.reject(reasons, **details)
        if findings.reviewed:
            return Verdict.review(list(findings.reviewed.values()), **details)
        return Verdict.approve(**details)
