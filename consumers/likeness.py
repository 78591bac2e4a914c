"""Likeness stage: no public figures, and no real person without consent; by name and by face.

Before generation ("likeness"):
    prompt names a public figure (pipeline.likeness.names)                  -> reject, naming the entry
    each face in the input media (images, sampled video frames):
        matches a cameo the request names (consent already passed) -> allowed, even if it resembles someone
        matches a public figure                                    -> reject, naming the identity
        anything else                                              -> reject: no generation from photos of real people
After generation ("likeness-post"), on sampled frames of the generated video:
        matches a cameo the request names                          -> allowed
        matches a public figure, or a cameo the request did not name -> reject
        matches nobody                                             -> allowed (a synthetic face)

Every face's best match, distance and threshold are recorded with the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from pipeline.likeness.faces import FaceEmbedder
from pipeline.likeness.galleries import CAMEOS, PUBLIC_FIGURES, GallerySearch
from pipeline.likeness.names import NameMatcher, read_lexicon
from pipeline.media.assets import AssetIntegrityError, AssetStore
from pipeline.media.frames import UnreadableMedia, frames_of
from pipeline.runtime.stage import Verdict
from policies.loader import LoadedPolicy
from schemas.models import MediaReference, PipelineItem, Reason


class LikenessRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lexicon_files: list[str] = Field(default_factory=lambda: ["lexicons/public_figures.txt"])
    allow_list: list[str] = Field(default_factory=list)
    min_alias_length: int = Field(default=3, ge=1)
    face_match_distance: dict[str, float] = Field(default_factory=lambda: {"dlib": 0.5, "insightface": 1.0})
    min_detection_score: dict[str, float] = Field(default_factory=lambda: {"dlib": 0.3, "insightface": 0.5})
    review_distance: dict[str, float] = Field(
        default_factory=dict,
        description="Per backend: a face between face_match_distance and this is borderline and goes to human "
                    "review instead of being decided (empty: no review)")
    frame_every: int = Field(default=8, ge=1)
    max_frames: int = Field(default=16, ge=1, le=1000)


def build_name_matcher(policy: LoadedPolicy[LikenessRules]) -> NameMatcher:
    entries = []
    for relative in policy.rules.lexicon_files:
        entries.extend(read_lexicon(Path(policy.path).parent / relative))
    return NameMatcher(entries, policy.rules.allow_list, policy.rules.min_alias_length)


@dataclass
class FaceRecords:
    findings: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[Reason] = field(default_factory=list)
    review_reasons: list[Reason] = field(default_factory=list)


class LikenessStage:
    def __init__(self, name: str, policy: LoadedPolicy[LikenessRules], names: NameMatcher,
                 embedder: Callable[[], FaceEmbedder], galleries: Callable[[str], GallerySearch],
                 assets: AssetStore) -> None:
        if name not in ("likeness", "likeness-post"):
            raise ValueError(name)
        self.name = name
        self.policy = policy
        self._names = names
        self._embedder = embedder  # loaded on first use: prompt-only traffic never pays for face models
        self._galleries = galleries
        self._assets = assets

    @property
    def after_generation(self) -> bool:
        return self.name == "likeness-post"

    def decide(self, item: PipelineItem) -> Verdict:
        request = item.request
        if self.after_generation:
            video = item.assets.get("video")
            if video is None:
                return Verdict.reject([Reason(code="no_generated_video",
                                              message="There is no generated video to check, so it cannot be "
                                                      "published.")])
            media = [video]
            named = []
        else:
            named = self._names.find(request.prompt)
            media = list(request.input_media)
        reasons = [Reason(code="public_figure_named",
                          message=f"The prompt names a public figure ({match.name}); videos of public figures "
                                  f"are not allowed.") for match in named]
        records = FaceRecords()
        for reference in media:
            self._check_media(reference, request.cameo_ids, records)
        details = {"names": [vars(match) for match in named], "faces": records.findings,
                   "lexicon_size": self._names.size}
        all_reasons = reasons + records.reasons
        if all_reasons:
            return Verdict.reject(_unique(all_reasons), **details)
        if records.review_reasons:
            return Verdict.review(_unique(records.review_reasons), **details)
        return Verdict.approve(**details)

    def _check_media(self, reference: MediaReference, cameo_ids: list[str], records: FaceRecords) -> None:
        rules = self.policy.rules
        try:
            frames = frames_of(self._assets.get(reference), reference.media_type, rules.frame_every,
                               rules.max_frames)
        except (AssetIntegrityError, UnreadableMedia) as problem:
            records.reasons.append(Reason(code="media_unreadable",
                                          message=f"A media file could not be checked ({problem}), so it cannot "
                                                  f"be used."))
            return
        embedder = self._embedder()
        threshold = rules.face_match_distance.get(embedder.name)
        min_score = rules.min_detection_score.get(embedder.name, 0.0)
        if threshold is None:
            raise ValueError(f"policy {self.policy.policy_id} sets no face_match_distance for {embedder.name}")
        review = rules.review_distance.get(embedder.name)
        search = self._galleries(embedder.name)
        search.refresh()
        for frame_index, rgb in frames:
            for face in embedder.faces(rgb):
                if face.score < min_score:
                    continue
                own_cameo = search.nearest_among(CAMEOS, cameo_ids, face.embedding)
                public = search.nearest(PUBLIC_FIGURES, face.embedding)
                any_cameo = search.nearest(CAMEOS, face.embedding)
                finding = {"media": reference.sha256[:16], "frame": frame_index, "box": list(face.box),
                           "detection_score": round(face.score, 3), "threshold": threshold,
                           "own_cameo": _match(own_cameo), "public_figure": _match(public),
                           "any_cameo": _match(any_cameo)}
                verdict, reason, review_reason = self._judge(own_cameo, public, any_cameo, threshold, review)
                finding["verdict"] = verdict
                records.findings.append(finding)
                if reason is not None:
                    records.reasons.append(reason)
                if review_reason is not None:
                    records.review_reasons.append(review_reason)

    def _judge(self, own_cameo, public, any_cameo, threshold: float,
               review: float | None) -> tuple[str, Reason | None, Reason | None]:
        """(verdict label, rejection reason, review reason) for one face."""
        if own_cameo is not None and own_cameo.distance <= threshold:
            return "consenting_cameo", None, None
        if public is not None and public.distance <= threshold:
            return "public_figure", Reason(code="public_figure_face",
                                           message=f"A face in the media matches a public figure ({public.name}); "
                                                   f"videos of public figures are not allowed."), None
        if any_cameo is not None and any_cameo.distance <= threshold:
            return "unconsented_cameo", Reason(code="unconsented_person_face",
                                               message="A face in the media belongs to a person whose cameo this "
                                                       "request does not have consent to use."), None
        if review is not None and own_cameo is not None and own_cameo.distance <= review:
            return "borderline_own_cameo", None, Reason(
                code="borderline_cameo_match",
                message="A face resembles one of the request's cameos, but not closely enough to be sure; a "
                        "person will check it.")
        if review is not None and public is not None and public.distance <= review:
            return "borderline_public_figure", None, Reason(
                code="borderline_public_figure",
                message=f"A face resembles a public figure ({public.name}), but not closely enough to be sure; "
                        f"a person will check it.")
        if self.after_generation:
            return "synthetic", None, None
        return "unknown_real_person", Reason(code="unconsented_person_face",
                                             message="A face in the input media matches none of the request's "
                                                     "cameos; videos cannot be made from photos of real people "
                                                     "without their consent."), None


def _match(match) -> dict[str, Any] | None:
    return None if match is None else {"name": match.name, "distance": round(match.distance, 4)}


def _unique(reasons: list[Reason]) -> list[Reason]:
    return list(dict.fromkeys(reasons))
