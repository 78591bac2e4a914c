"""Likeness stage: no public figures, and no real person without consent; by name and by face.

Before generation ("likeness"):
    prompt names a public figure (pipeline.likeness.names)                  -> reject, naming the entry
    each face in the input media (images, sampled video frames):
        matches a cameo the request names (consent already passed) -> allowed, even if it resembles someone
        matches a public figure                                    -> reject, naming the identity
        matches another cameo, or a retired (revoked) one          -> reject: that person did not consent
        anything else                                              -> reject: no generation from photos of real people
After generation ("likeness-post"), on sampled frames of the generated video:
        matches a cameo the request names                          -> allowed
        matches a public figure, or a cameo the request did not name -> reject
        matches nobody                                             -> allowed (a synthetic face)
    and the generated sound, with a voice model configured (pipeline.likeness.voices), by the same rules;
    without one, the policy's voice.without_model says whether a video with sound may pass at all.

"Matches a cameo the request names" means within face_match_distance of at least k of the cameo's n
enrolled references (cameo_match_references per backend, capped at n; 1 = the best one). Cameo faces
come from the owner's verified reference media (pipeline.state.enrollment). Every face's best matches,
its distance to each of the request's cameo references, and the threshold are recorded with the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.likeness.faces import FaceEmbedder, SameFaceMemory, SmallFaceSchedule
from pipeline.likeness.galleries import CAMEOS, PUBLIC_FIGURES, RETIRED_CAMEOS, GalleryMatch, GallerySearch
from pipeline.likeness.names import NameMatcher, read_lexicon
from pipeline.likeness.voices import VoiceEmbedder, voice_backend_name
from pipeline.media.assets import AssetIntegrityError, AssetStore
from pipeline.media.frames import UnreadableMedia, audio_of, frames_of
from pipeline.runtime.stage import Verdict, media_unreadable, no_generated_video
from policies.loader import LoadedPolicy
from schemas.models import MediaReference, PipelineItem, Reason


class VoiceRules(BaseModel):
    """Generated sound, checked against enrolled voices after generation."""

    model_config = ConfigDict(extra="forbid")

    match_distance: dict[str, float] = Field(default_factory=dict,
                                             description="Per voice model: the distance at which voices count "
                                                         "as the same person")
    without_model: Literal["allow", "reject"] = Field(
        default="reject", description="A generated video with sound when no voice model is configured")
    max_seconds: float = Field(default=60.0, gt=0, description="How much of the sound is checked")


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
    cameo_match_references: dict[str, int] = Field(
        default_factory=dict,
        description="Per backend: of how many of a cameo's enrolled references (k of n, capped at n) a face "
                    "must be within face_match_distance to count as that cameo (default 1: the best one)")
    frame_every: int = Field(default=8, ge=1)
    max_frames: int = Field(default=16, ge=1, le=1000)
    min_face_size: int = Field(
        default=40, ge=10, le=1000,
        description="The smallest face, in pixels across in the image or frame, the check must find. With dlib, "
                    "80 and up needs no upsampling; each halving below it costs about 4x the detection time")
    same_face_max_block_change: float = Field(
        default=12.0, ge=0, le=255,
        description="Within one video: a face whose aligned crop differs from an already described face's crop "
                    "by at most this many grey levels in every block (10 x 10 grid, mean absolute difference) "
                    "takes that face's descriptor instead of running the recognition network again; 0 = never")
    small_face_every: int = Field(
        default=2, ge=1, le=100,
        description="In a video: search down to min_face_size on every n-th sampled frame and on the frame after "
                    "any where a face needing upsampling was found; the frames between are searched without "
                    "upsampling (dlib: from 80 px, ~4x cheaper). 1 = every sampled frame down to min_face_size")
    voice: VoiceRules = Field(default_factory=lambda: VoiceRules())


def build_name_matcher(policy: LoadedPolicy[LikenessRules]) -> NameMatcher:
    entries = []
    for relative in policy.rules.lexicon_files:
        entries.extend(read_lexicon(Path(policy.path).parent / relative))
    return NameMatcher(entries, policy.rules.allow_list, policy.rules.min_alias_length)


@dataclass
class FaceRecords:
    findings: list[dict[str, Any]] = field(default_factory=list)
    voices: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[Reason] = field(default_factory=list)
    review_reasons: list[Reason] = field(default_factory=list)
    searched: list[dict[str, Any]] = field(default_factory=list)  # per frame: the smallest face looked for


@dataclass(frozen=True)
class CameoMatch:
    """A face (or voice) against one of the request's own cameos: every reference's distance, k of n."""

    name: str
    distances: tuple[float, ...]  # to each enrolled reference, nearest first
    within: int  # references within the match distance
    required: int  # k, capped at the number of references

    @property
    def distance(self) -> float:
        return self.distances[0]

    @property
    def matched(self) -> bool:
        return self.within >= self.required

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "distance": round(self.distance, 4),
                "reference_distances": [round(d, 4) for d in self.distances],
                "references_within": self.within, "references_required": self.required}


def own_cameo_match(search: GallerySearch, cameo_ids: list[str], embedding, threshold: float,
                    required: int) -> CameoMatch | None:
    """The request's cameo this embedding fits best: a k-of-n match first, then the nearest reference."""
    best = None
    for name in cameo_ids:
        distances = search.reference_distances(CAMEOS, name, embedding)
        if distances is None:
            continue
        ordered = tuple(sorted(float(d) for d in distances))
        match = CameoMatch(name, ordered, sum(d <= threshold for d in ordered), min(max(required, 1), len(ordered)))
        if best is None or (match.matched, -match.distance) > (best.matched, -best.distance):
            best = match
    return best


def nearest_cameo(search: GallerySearch, embedding) -> GalleryMatch | None:
    """The nearest cameo owner, current or retired: retired owners stay protected, never consenting."""
    matches = [m for m in (search.nearest(CAMEOS, embedding), search.nearest(RETIRED_CAMEOS, embedding)) if m]
    return min(matches, key=lambda match: match.distance) if matches else None


class LikenessStage:
    def __init__(self, name: str, policy: LoadedPolicy[LikenessRules], names: NameMatcher,
                 embedder: Callable[[], FaceEmbedder], galleries: Callable[[str], GallerySearch],
                 assets: AssetStore, voice: Callable[[], VoiceEmbedder | None] = lambda: None) -> None:
        if name not in ("likeness", "likeness-post"):
            raise ValueError(name)
        self.name = name
        self.policy = policy
        self._names = names
        self._embedder = embedder  # loaded on first use: prompt-only traffic never pays for face models
        self._voice = voice
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
                return no_generated_video()
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
                   "faces_searched": records.searched, "lexicon_size": self._names.size}
        if self.after_generation:
            details["voices"] = records.voices
        all_reasons = reasons + records.reasons
        if all_reasons:
            return Verdict.reject(_unique(all_reasons), **details)
        if records.review_reasons:
            return Verdict.review(_unique(records.review_reasons), **details)
        return Verdict.approve(**details)

    def _check_media(self, reference: MediaReference, cameo_ids: list[str], records: FaceRecords) -> None:
        rules = self.policy.rules
        try:
            data = self._assets.get(reference)
            frames = frames_of(data, reference.media_type, rules.frame_every, rules.max_frames)
        except (AssetIntegrityError, UnreadableMedia) as problem:
            records.reasons.append(media_unreadable(problem))
            return
        embedder = self._embedder()
        threshold = rules.face_match_distance.get(embedder.name)
        min_score = rules.min_detection_score.get(embedder.name, 0.0)
        if threshold is None:
            raise ValueError(f"policy {self.policy.policy_id} sets no face_match_distance for {embedder.name}")
        review = rules.review_distance.get(embedder.name)
        required = rules.cameo_match_references.get(embedder.name, 1)
        search = self._galleries(embedder.name)
        search.refresh()
        memory = SameFaceMemory(rules.same_face_max_block_change) if rules.same_face_max_block_change else None
        sizes = SmallFaceSchedule(rules.min_face_size, rules.small_face_every, embedder.unscaled_min_face)
        for frame_index, rgb in frames:
            if memory is not None:
                memory.where = frame_index
            smallest = sizes.next_size()
            records.searched.append({"media": reference.sha256[:16], "frame": frame_index, "min_face_size": smallest})
            faces = embedder.faces(rgb, smallest, memory)
            sizes.found(faces)
            for face in faces:
                if face.score < min_score:
                    continue
                finding = {"media": reference.sha256[:16], "frame": frame_index, "box": list(face.box),
                           "detection_score": round(face.score, 3)}
                if face.described_at not in (None, frame_index):  # the same face as there: its descriptor
                    finding["descriptor_from_frame"] = face.described_at
                self._judge_one("face", face.embedding, search, cameo_ids, threshold, required, review, finding,
                                records)
                records.findings.append(finding)
        if self.after_generation:
            self._check_voice(reference, data, cameo_ids, records)

    def _check_voice(self, reference: MediaReference, data: bytes, cameo_ids: list[str],
                     records: FaceRecords) -> None:
        """Whose voice the generated sound is: the same rules as faces, or the policy's word without a model."""
        rules = self.policy.rules.voice
        try:
            audio = audio_of(data, rules.max_seconds)
        except UnreadableMedia as problem:
            records.reasons.append(media_unreadable(problem))
            return
        if audio is None:
            return
        embedder = self._voice()
        finding: dict[str, Any] = {"media": reference.sha256[:16], "seconds": round(len(audio[0]) / audio[1], 2)}
        records.voices.append(finding)
        if embedder is None:
            finding.update(checked=False, without_model=rules.without_model)
            if rules.without_model == "reject":
                records.reasons.append(Reason(code="audio_unchecked",
                                              message="The video has sound, and no voice model is configured to "
                                                      "tell whose voice it is; this policy does not publish "
                                                      "unchecked sound."))
            return
        threshold = rules.match_distance.get(embedder.name)
        if threshold is None:
            raise ValueError(f"policy {self.policy.policy_id} sets no voice.match_distance for {embedder.name}")
        search = self._galleries(voice_backend_name(embedder))
        search.refresh()
        finding.update(checked=True, model=embedder.name)
        self._judge_one("voice", embedder.embed(*audio), search, cameo_ids, threshold, 1, None, finding, records)

    def _judge_one(self, kind: str, embedding, search: GallerySearch, cameo_ids: list[str], threshold: float,
                   required: int, review: float | None, finding: dict[str, Any], records: FaceRecords) -> None:
        own = own_cameo_match(search, cameo_ids, embedding, threshold, required)
        public = search.nearest(PUBLIC_FIGURES, embedding)
        any_cameo = nearest_cameo(search, embedding)
        finding.update(threshold=threshold, own_cameo=own.record() if own else None,
                       public_figure=_match(public), any_cameo=_match(any_cameo))
        verdict, reason, review_reason = self._judge(kind, own, public, any_cameo, threshold, review)
        finding["verdict"] = verdict
        if reason is not None:
            records.reasons.append(reason)
        if review_reason is not None:
            records.review_reasons.append(review_reason)

    def _judge(self, kind: str, own: CameoMatch | None, public: GalleryMatch | None, any_cameo: GalleryMatch | None,
               threshold: float, review: float | None) -> tuple[str, Reason | None, Reason | None]:
        """(verdict label, rejection reason, review reason) for one face or voice."""
        where = "A face in the media" if kind == "face" else "The voice in the video's sound"
        if own is not None and own.matched:
            return "consenting_cameo", None, None
        if public is not None and public.distance <= threshold:
            return "public_figure", Reason(code=f"public_figure_{kind}",
                                           message=f"{where} matches a public figure ({public.name}); "
                                                   f"videos of public figures are not allowed."), None
        if any_cameo is not None and any_cameo.distance <= threshold:
            if own is not None and any_cameo.name == own.name:
                return "too_few_cameo_references", Reason(
                    code="cameo_match_insufficient",
                    message=f"{where} resembles one of the request's cameos but matches too few of its verified "
                            f"references ({own.within} of the {own.required} required) to be sure it is its "
                            f"owner."), None
            return "unconsented_cameo", Reason(code=f"unconsented_person_{kind}",
                                               message=f"{where} belongs to a person whose cameo this request does "
                                                       f"not have consent to use."), None
        if review is not None and own is not None and own.distance <= review:
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
    return None if match is None else {"name": match.name, "gallery": match.gallery,
                                       "distance": round(match.distance, 4)}


def _unique(reasons: list[Reason]) -> list[Reason]:
    return list(dict.fromkeys(reasons))
