"""Cameo enrollment: the faces (and voice) of a cameo's verified reference media, in its gallery entry.

    cameo.consents VERIFY at offset o, with reference_media
        each image --every face backend--> exactly one face at or above the policy's detection score,
                                           or the verification fails (recorded; the cameo stays unusable)
        each audio --the voice embedder, when one is configured--> one voice embedding
        --> gallery "cameos"/<cameo_id>: the enrollment embeddings of the previous verification are
            replaced (embeddings an operator added with `trustreel gallery add` stay)
        --> cameo_enrollments row: offset, status, error, what each reference gave, policy version
    cameo.consents REVOKE (the whole cameo) at offset o
        --> the entry moves to "retired_cameos": kept for audit, still protects the owner's face,
            never matched as a consenting cameo

The consents feed runs this before the registry applies the same record, so whenever the registry
shows a verification, its enrollment is already recorded. Each slot's offset only moves forward:
a replay (worker start, `trustreel cameo rebuild`) enrolls what is missing and skips the rest, and
an empty database rebuilt from the topic and the asset store ends in the same state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import CameoEnrollmentRow
from pipeline.likeness.faces import FaceEmbedder, shared_embedder
from pipeline.likeness.galleries import CAMEOS, RETIRED_CAMEOS, GalleryStore
from pipeline.likeness.voices import VoiceEmbedder, shared_voice_embedder, voice_backend_name
from pipeline.media.assets import AssetIntegrityError, AssetStore, asset_store
from pipeline.media.frames import audio_of, decode_image
from pipeline.settings import Settings
from policies.loader import LatestPolicy, LoadedPolicy
from schemas.models import ConsentEvent, ConsentKind, MediaReference

log = logging.getLogger("trustreel.enrollment")

ENROLLED = "enrolled"
FAILED = "failed"
NO_REFERENCE = "no_reference"


class EnrollmentRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_detection_score: dict[str, float] = Field(
        default_factory=lambda: {"dlib": 0.3, "insightface": 0.5},
        description="Per face backend: detections below this score are not faces (dlib also fires on "
                    "face-like regions); a reference image must show exactly one face at or above it")
    max_reference_spread: dict[str, float] = Field(
        default_factory=lambda: {"dlib": 0.6, "insightface": 1.2},
        description="Per face backend: the largest distance between two reference faces of one cameo; farther "
                    "apart, they are not one person and the verification fails")
    max_voice_seconds: float = Field(default=60.0, gt=0, description="Longer voice samples are cut here")


@dataclass(frozen=True)
class Enrollment:
    """What one verification's reference media gave: embeddings to enroll, or why it failed."""

    status: str
    error: str | None
    embeddings: list[tuple[str, np.ndarray, str]]  # (backend, vector, source)
    findings: list[dict[str, Any]]


class CameoEnrollment:
    """Applies consent events to the cameos' gallery entries (an `Applies` for the consents feed)."""

    def __init__(self, sessions: sessionmaker, galleries: GalleryStore, assets: AssetStore,
                 face_embedders: Callable[[], list[FaceEmbedder]],
                 voice_embedder: Callable[[], VoiceEmbedder | None],
                 policy: Callable[[], LoadedPolicy[EnrollmentRules]]) -> None:
        self._sessions = sessions
        self._galleries = galleries
        self._assets = assets
        self._face_embedders = face_embedders  # loaded on first use: most consent records carry no media
        self._voice_embedder = voice_embedder
        self._policy = policy

    def apply(self, event: ConsentEvent, offset: int) -> bool:
        """Enroll a verification or retire a revoked cameo; False when this offset was applied before."""
        if event.kind is ConsentKind.VERIFY:
            return self._verify(event, offset)
        if event.kind is ConsentKind.REVOKE and event.account is None:
            return self._retire(event, offset)
        return False

    def _verify(self, event: ConsentEvent, offset: int) -> bool:
        with self._sessions() as session:
            row = session.get(CameoEnrollmentRow, event.cameo_id)
            if row is not None and row.verification_offset >= offset:
                return False  # cheap check first: embedding is the expensive part of a replay
        policy = self._policy()
        enrollment = self.enroll(event.reference_media, policy.rules, source=f"enrollment:{offset}")
        with self._sessions.begin() as session:
            row = _locked_row(session, event.cameo_id)
            if row.verification_offset >= offset:
                return False
            if enrollment.status != FAILED:  # a failed re-verification leaves the old faces protecting her
                gallery = RETIRED_CAMEOS if row.revocation_offset >= 0 else CAMEOS
                self._galleries.replace_enrolled(session, gallery, event.cameo_id, enrollment.embeddings)
            row.verification_offset = offset
            row.status, row.error, row.findings = enrollment.status, enrollment.error, enrollment.findings
            row.policy_id, row.policy_version = policy.policy_id, policy.version
            row.enrolled_at = datetime.now(timezone.utc)
        log.info("cameo %s enrollment at offset %d: %s%s", event.cameo_id, offset, enrollment.status,
                 f" ({enrollment.error})" if enrollment.error else "")
        return True

    def _retire(self, event: ConsentEvent, offset: int) -> bool:
        with self._sessions.begin() as session:
            row = _locked_row(session, event.cameo_id)
            if row.revocation_offset >= offset:
                return False
            self._galleries.move(session, event.cameo_id, CAMEOS, RETIRED_CAMEOS)
            row.revocation_offset, row.retired_at = offset, event.occurred_at
        return True

    def enroll(self, references: list[MediaReference], rules: EnrollmentRules, source: str) -> Enrollment:
        """Embed every reference; the first one that cannot stand for the owner fails the verification.

        Never raises for what the media holds or for a model error: either fails the verification with
        a reason a person can act on (fail closed: the cameo stays unusable until verified again).
        """
        embeddings: list[tuple[str, np.ndarray, str]] = []
        findings: list[dict[str, Any]] = []
        for position, reference in enumerate(references):
            label = f"reference {position + 1} ({reference.media_type}, {reference.sha256[:12]})"
            tag = f"{source}:{reference.sha256[:16]}"
            try:
                data = self._assets.get(reference)
            except (AssetIntegrityError, OSError) as exc:
                return self._failed(findings, reference, f"{label} could not be read: {exc}")
            try:
                if reference.media_type.startswith("image/"):
                    found = self._faces(decode_image(data), rules, tag)
                elif reference.media_type.startswith("audio/"):
                    found = self._voice(data, rules, tag)
                else:
                    raise EnrollmentProblem("is neither an image nor a voice sample")
            except EnrollmentProblem as problem:
                return self._failed(findings, reference, f"{label} {problem}")
            except Exception as exc:  # undecodable bytes or a model error: never a silent gap, never a crash
                return self._failed(findings, reference,
                                    f"{label} could not be enrolled ({type(exc).__name__}: {exc})")
            findings.append({"reference": reference.sha256, "media_type": reference.media_type,
                             **{k: v for k, v in found.items() if k != "embeddings"}})
            embeddings.extend(found["embeddings"])
        if not references:
            return Enrollment(NO_REFERENCE, None, [], findings)
        mismatch = _not_one_person(embeddings, rules.max_reference_spread)
        if mismatch is not None:
            return Enrollment(FAILED, mismatch, [], findings + [{"problem": mismatch}])
        return Enrollment(ENROLLED, None, embeddings, findings)

    @staticmethod
    def _failed(findings: list[dict[str, Any]], reference: MediaReference, error: str) -> Enrollment:
        return Enrollment(FAILED, error, [], findings + [{"reference": reference.sha256, "problem": error}])

    def _faces(self, rgb: np.ndarray, rules: EnrollmentRules, source: str) -> dict[str, Any]:
        embeddings, scores = [], {}
        for embedder in self._face_embedders():
            minimum = rules.min_detection_score.get(embedder.name)
            if minimum is None:
                raise EnrollmentProblem(f"cannot be enrolled: the policy sets no min_detection_score for "
                                        f"{embedder.name}")
            faces = [face for face in embedder.faces(rgb) if face.score >= minimum]
            if len(faces) != 1:
                shown = "no face" if not faces else f"{len(faces)} faces"
                raise EnrollmentProblem(f"shows {shown} ({embedder.name}); a reference image must show the "
                                        f"owner's face alone")
            embeddings.append((embedder.name, faces[0].embedding, source))
            scores[embedder.name] = round(faces[0].score, 3)
        return {"embeddings": embeddings, "face_scores": scores}

    def _voice(self, data: bytes, rules: EnrollmentRules, source: str) -> dict[str, Any]:
        embedder = self._voice_embedder()
        if embedder is None:
            return {"embeddings": [], "voice": "not enrolled: no voice model is configured"}
        audio = audio_of(data, rules.max_voice_seconds)
        if audio is None:
            raise EnrollmentProblem("has no sound")
        vector = embedder.embed(*audio)
        return {"embeddings": [(voice_backend_name(embedder), vector, source)], "voice": embedder.name}


class EnrollmentProblem(Exception):
    """A reference that cannot stand for the owner: the message completes "reference N ..."."""


def _not_one_person(embeddings: list[tuple[str, np.ndarray, str]], spread: dict[str, float]) -> str | None:
    """Why the reference faces are not all one person, or None: each pair within the backend's spread."""
    for backend, limit in spread.items():
        faces = [(vector, source) for name, vector, source in embeddings if name == backend]
        for i, (first, first_source) in enumerate(faces):
            for second, second_source in faces[i + 1:]:
                distance = float(np.linalg.norm(first - second))
                if distance > limit:
                    return (f"the reference images do not show one person ({backend} distance {distance:.2f} "
                            f"between {first_source.rsplit(':', 1)[-1][:12]} and "
                            f"{second_source.rsplit(':', 1)[-1][:12]}, above {limit})")
    return None


def _locked_row(session, cameo_id: str) -> CameoEnrollmentRow:
    row = session.get(CameoEnrollmentRow, cameo_id, with_for_update=True)
    if row is None:
        row = CameoEnrollmentRow(cameo_id=cameo_id, verification_offset=-1, revocation_offset=-1)
        session.add(row)
        session.flush()
    return row


def enrollment_policy(policy_dir: Path | None) -> LatestPolicy[EnrollmentRules]:
    """policies/enrollment.yaml, read again when it changes (each enrollment asks for it)."""
    return LatestPolicy("enrollment", EnrollmentRules, policy_dir)


def cameo_enrollment(settings: Settings, sessions: sessionmaker) -> CameoEnrollment:
    """Enrollment as the consents feed runs it: every configured face backend, the voice model if any."""
    backends = settings.enrollment_backends
    if "insightface" in backends and settings.insightface_model_dir is None:
        raise ValueError("enrolling with insightface needs TRUSTREEL_INSIGHTFACE_MODEL_DIR")
    return CameoEnrollment(
        sessions, GalleryStore(sessions), asset_store(settings.asset_dir, settings.asset_url),
        face_embedders=lambda: [shared_embedder(backend, settings.insightface_model_dir) for backend in backends],
        voice_embedder=lambda: shared_voice_embedder(settings.voice_backend, settings.voice_model_dir),
        policy=enrollment_policy(settings.policy_dir))
