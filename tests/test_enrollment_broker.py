"""Cameo enrollment on the real broker: the consent events alone make a cameo's face usable.

Eileen Collins (scikit-image's astronaut photo) owns cam-eileen and grants it to bob. Nobody touches a
gallery by hand: `trustreel cameo verify --media` is the only way her face gets in.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.audit.db import CameoEnrollmentRow, GalleryEmbeddingRow, GalleryIdentityRow
from pipeline.cli import app
from pipeline.settings import Settings
from tests import face_fixtures as photos
from tests import voice_fixtures as voices
from tests.conftest import settings_env, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.stages("consent", "likeness", "publish")]


def cli(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=settings_env(settings))
    assert result.exit_code == 0, result.output
    return result.output


class Outcomes:
    """Each request's single outcome, read from feed.published and gen.rejected."""

    def __init__(self, read_topic) -> None:
        self.published, self.rejected = read_topic("feed.published"), read_topic("gen.rejected")

    def of(self, *request_ids: str, timeout: float = 120.0) -> dict[str, str]:
        def collect() -> dict[str, str]:
            found = {p["request_id"]: "published" for p in self.published.json_values()}
            found |= {r["request_id"]: f"{r['stage']}:{r['reasons'][0]['code']}" for r in self.rejected.json_values()}
            return found

        wait_for(lambda: set(request_ids) <= set(collect()), timeout, what=f"outcomes of {request_ids}")
        return {request_id: collect()[request_id] for request_id in request_ids}


def submit(settings: Settings, request_id: str, requester: str, photo: Path, *cameos: str) -> None:
    extra = [argument for cameo in cameos for argument in ("--cameo", cameo)]
    cli(settings, "submit", "--requester", requester, "--prompt", "us at the beach", "--media", str(photo),
        "--request-id", request_id, *extra)


def enrollment_state(sessions, cameo: str) -> tuple[int, str | None, dict[str, set[str]]]:
    """(enrolled verification offset, status, gallery -> backends) straight from the audit database."""
    with sessions() as session:
        row = session.get(CameoEnrollmentRow, cameo)
        entries = session.execute(select(GalleryIdentityRow.gallery, GalleryEmbeddingRow.backend)
                                  .join(GalleryEmbeddingRow, GalleryEmbeddingRow.identity_id == GalleryIdentityRow.id)
                                  .where(GalleryIdentityRow.name == cameo)).all()
    galleries: dict[str, set[str]] = {}
    for gallery, backend in entries:
        galleries.setdefault(gallery, set()).add(backend)
    return (row.verification_offset, row.status, galleries) if row else (-1, None, galleries)


def test_verified_media_alone_enroll_her_face_through_re_verification_revocation_and_rebuild(
        settings, start_worker, read_topic, sessions, tmp_path) -> None:
    live = settings.model_copy(update={"voice_backend": "tests.voice_fixtures:scripted_voice_embedder"})
    her, her_again = tmp_path / "eileen.png", tmp_path / "eileen-flipped.png"
    her.write_bytes(photos.png_bytes(photos.astronaut()))
    her_again.write_bytes(photos.png_bytes(photos.altered_copies(photos.astronaut())["flip"]))
    guest = tmp_path / "guest.png"
    guest.write_bytes(photos.png_bytes(photos.group_portrait(2)))
    voice = tmp_path / "eileen.wav"
    voice.write_bytes(voices.tone_wav(220.0))

    cli(live, "cameo", "register", "cam-eileen", "--owner", "alice", "--audience", "approved")
    cli(live, "cameo", "grant", "cam-eileen", "bob")
    cli(live, "cameo", "verify", "cam-eileen", "--verified-by", "liveness-service", "--media", str(her),
        "--media", str(voice))
    worker = start_worker(settings_override=live)
    outcomes = Outcomes(read_topic)
    first, status, galleries = wait_for(lambda: enrollment_state(sessions, "cam-eileen")[1] and
                                        enrollment_state(sessions, "cam-eileen"), 120, what="enrollment")
    assert (status, galleries) == ("enrolled", {"cameos": {"dlib", "voice:scripted"}})
    assert '"enrollment_status": "enrolled"' in cli(live, "cameo", "show", "cam-eileen")

    submit(live, "owner", "alice", her_again, "cam-eileen")
    submit(live, "friend", "bob", her_again, "cam-eileen")
    submit(live, "stranger", "carol", her_again)
    assert outcomes.of("owner", "friend", "stranger") == {
        "owner": "published", "friend": "published", "stranger": "likeness:unconsented_person_face"}

    # Re-verification with another photo replaces her reference (a stand-in face, to tell them apart).
    cli(live, "cameo", "verify", "cam-eileen", "--verified-by", "liveness-service", "--media", str(guest))
    wait_for(lambda: enrollment_state(sessions, "cam-eileen")[0] > first, 60, what="re-enrollment")
    submit(live, "old-photo", "alice", her_again, "cam-eileen")
    submit(live, "new-photo", "bob", guest, "cam-eileen")
    assert outcomes.of("old-photo", "new-photo") == {"old-photo": "likeness:unconsented_person_face",
                                                     "new-photo": "published"}

    # A face that is not one clear face fails the verification, visibly, and the cameo is unusable.
    group = tmp_path / "group.jpg"
    group.write_bytes(photos.png_bytes(photos.group_photo()))
    cli(live, "cameo", "verify", "cam-eileen", "--verified-by", "liveness-service", "--media", str(group))
    wait_for(lambda: enrollment_state(sessions, "cam-eileen")[1] == "failed", 60, what="failed enrollment")
    submit(live, "after-bad-verification", "bob", guest, "cam-eileen")
    assert outcomes.of("after-bad-verification") == {"after-bad-verification": "consent:cameo_enrollment_failed"}
    assert "shows 6 faces" in cli(live, "cameo", "show", "cam-eileen")
    cli(live, "cameo", "verify", "cam-eileen", "--verified-by", "liveness-service", "--media", str(guest))
    wait_for(lambda: enrollment_state(sessions, "cam-eileen")[1] == "enrolled", 60, what="enrollment again")

    # Revocation retires the face: her photo is now rejected for everyone, the owner included.
    cli(live, "cameo", "revoke", "cam-eileen", "--reason", "changed my mind")
    wait_for(lambda: "retired_cameos" in enrollment_state(sessions, "cam-eileen")[2], 60, what="retirement")
    submit(live, "revoked-owner", "alice", guest, "cam-eileen")
    submit(live, "revoked-owner-uncredited", "alice", guest)
    submit(live, "revoked-stranger", "carol", guest)
    assert outcomes.of("revoked-owner", "revoked-owner-uncredited", "revoked-stranger") == {
        "revoked-owner": "consent:cameo_revoked", "revoked-owner-uncredited": "likeness:unconsented_person_face",
        "revoked-stranger": "likeness:unconsented_person_face"}
    retired = enrollment_state(sessions, "cam-eileen")
    worker.stop()

    # Wipe the database: `cameo rebuild` alone restores the enrollment from the topic and the asset store.
    database = Path(live.db_url.removeprefix("sqlite:///"))
    sessions.kw["bind"].dispose()
    database.unlink()
    cli(live, "cameo", "rebuild")
    assert enrollment_state(sessions, "cam-eileen") == retired
    start_worker(settings_override=live)
    submit(live, "rebuilt-owner", "alice", guest, "cam-eileen")
    submit(live, "rebuilt-stranger", "carol", guest)
    assert outcomes.of("rebuilt-owner", "rebuilt-stranger") == {
        "rebuilt-owner": "consent:cameo_revoked", "rebuilt-stranger": "likeness:unconsented_person_face"}
