"""Hash banks and the known-media stage, on real SQLite files and real PDQ hashes (no broker)."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as images

from consumers.known_media import KnownMediaRules, KnownMediaStage, attributions_of
from pipeline.audit.db import make_engine, make_sessionmaker, upgrade
from pipeline.hashing.banking import MediaBanker
from pipeline.hashing.banks import RIGHTS_REFERENCES, TAKEN_DOWN, BankError, BankSearch, BankStore, HashIndex, NewEntry
from pipeline.hashing.exchange import read_hash_list, write_hash_list
from pipeline.hashing.signals import PdqSignal, hamming
from pipeline.hashing.video import Sampling, media_hashes
from pipeline.media.assets import LocalAssetStore
from pipeline.state.rights_registry import RightsNames, SqlRightsRegistry
from policies.loader import LoadedPolicy, load_policy, policy_path
from schemas.models import GenerationRequest, MediaReference, Outcome, PipelineItem, RightsEvent, StageDecision
from tests import face_fixtures as photos

PDQ = PdqSignal()


def jpeg(rgb: np.ndarray, quality: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture
def sessions(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    return make_sessionmaker(make_engine(url))


@pytest.fixture
def assets(tmp_path: Path) -> LocalAssetStore:
    return LocalAssetStore(tmp_path / "assets")


def test_pdq_hashes_are_threatexchanges_and_survive_common_edits() -> None:
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes

    rgb = images.coffee()
    mine = PDQ.hash(rgb)
    theirs, quality = pdq_from_bytes(photos.png_bytes(rgb))
    assert (mine.hex, mine.quality) == (theirs, quality)
    mirrored = PDQ.hash(np.ascontiguousarray(rgb[:, ::-1]))
    assert hamming(mine.value, mirrored.value) > 31, "a mirror is a different hash ..."
    assert any(hamming(v.value, mirrored.value) <= 31 for v in PDQ.variants(rgb)), "... that a variant finds"
    recompressed = PDQ.hash(np.asarray(Image.open(io.BytesIO(jpeg(rgb)))))
    assert hamming(mine.value, recompressed.value) <= 31
    assert hamming(mine.value, PDQ.hash(images.chelsea()).value) > 31
    flat = PDQ.hash(np.full((64, 64, 3), 128, np.uint8))
    assert flat.quality < 50
    with pytest.raises(ValueError, match="64 hex digits"):
        PDQ.parse("abc")


def test_a_video_is_hashed_per_sampled_frame_with_still_shots_counted_once() -> None:
    still, other = images.coffee()[:256, :256], images.chelsea()[:256, :256]
    video = photos.mp4_bytes([still] * 8 + [other] * 8 + [np.full((256, 256, 3), 90, np.uint8)] * 4)
    found = media_hashes(PDQ, video, "video/mp4", Sampling(every=2, max_frames=100, min_quality=50))
    assert found.sampled == 10
    assert len(found.kept) == 2 and found.kept[0].frame == 0 and found.kept[1].frame == 8
    assert found.duplicates == 6 and found.low_quality == 2


def test_exact_and_multi_index_search_find_the_same_hashes_within_the_distance() -> None:
    rng = np.random.default_rng(3)
    bank = rng.integers(0, 256, (5000, 32), dtype=np.uint8)
    queries = bank[:40].copy()
    for row, flips in zip(queries, rng.integers(0, 40, 40)):
        for bit in rng.choice(256, flips, replace=False):
            row[bit // 8] ^= 1 << (bit % 8)
    exact, multi = HashIndex(bank, exact_up_to=10_000), HashIndex(bank, exact_up_to=100)
    assert (exact.kind, multi.kind) == ("flat", "multi-index hash")
    found_exact, found_multi = exact.within(queries, 31), multi.within(queries, 31)
    assert found_exact == found_multi
    for q, found in enumerate(found_exact):
        expected = hamming(queries[q].tobytes(), bank[q].tobytes())
        assert ((q, expected) in found) == (expected <= 31)


def test_banks_store_who_added_what_and_import_export_the_exchange_formats(sessions, tmp_path) -> None:
    from threatexchange.exchanges.impl.file_api import FileCollaborationConfig, LocalFileSignalExchangeAPI

    store = BankStore(sessions)
    store.create("industry", "block", source="an industry list", created_by="tessa")
    with pytest.raises(BankError, match="already exists"):
        store.create("industry", "block")
    with pytest.raises(BankError, match="action must be"):
        store.create("odd", "maybe")
    examples = ["f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22",
                "e64cc9d91c623882f8d1f1d9a398e78c9f199b3bd83924f2b7e11e0bf861b064"]
    te = tmp_path / "list.te"
    te.write_text(f"pdq {examples[0]}\n{examples[1]}\nvideo_md5 d41d8cd98f00b204e9800998ecf8427e\n")
    read = read_hash_list(te, "te")
    assert sorted(e.hash for e in read.entries) == sorted(examples) and read.skipped == {"video_md5": 1}
    assert store.add("industry", read.entries, "import:list.te", "tessa") == (2, 0)
    assert store.add("industry", read.entries, "import:list.te", "tessa") == (0, 2), "an import is idempotent"
    with pytest.raises(BankError, match="entry 2: not a PDQ hash"):
        store.add("industry", [NewEntry(examples[0], "x"), NewEntry("zz", "y")], "cli", "tessa")
    assert len(store.entries("industry")) == 2, "an invalid hash stops the whole add"

    exported = tmp_path / "out.te"
    exported.write_text(write_hash_list(store.entries("industry"), "te"))
    api = LocalFileSignalExchangeAPI(FileCollaborationConfig(name="round trip", filename=str(exported)))
    assert {key for delta in api.fetch_iter([], None) for key in delta.updates} == {("pdq", h) for h in examples}
    csv_text = write_hash_list(store.entries("industry"), "csv")
    assert csv_text.splitlines()[0].startswith("hash,quality,content_id,note,added_by")
    (tmp_path / "out.csv").write_text(csv_text)
    store.create("copy", "review")
    assert store.add("copy", read_hash_list(tmp_path / "out.csv", "csv").entries, "import", "x") == (2, 0)
    (tmp_path / "hasher.csv").write_text(f"{examples[0]},100,frame-1.jpg\n")  # PDQ's reference hasher output
    assert read_hash_list(tmp_path / "hasher.csv", "csv").entries == [NewEntry(examples[0], "frame-1.jpg", 100, "")]
    row = store.entries("industry")[0]
    assert (row.added_by, row.source, row.signal_type) == ("tessa", "import:list.te", "pdq")
    assert store.remove("copy") == 2 and [b.name for b, _ in store.banks()] == ["industry"]


def stage(name, sessions, assets, **rules) -> KnownMediaStage:
    loaded = load_policy(policy_path("known-media"), KnownMediaRules, "known-media")
    policy = LoadedPolicy(loaded.policy_id, loaded.stage, loaded.version, loaded.path,
                          loaded.rules.model_copy(update=rules))
    names = RightsNames(SqlRightsRegistry(sessions, MediaBanker(BankStore(sessions), assets)))
    return KnownMediaStage(name, policy, PDQ, BankSearch(BankStore(sessions)), lambda: names, assets)


def item(assets, prompt="a walk", media: list[bytes] = (), media_type="image/png") -> PipelineItem:
    refs = [assets.put(data, media_type) for data in media]
    return PipelineItem(request=GenerationRequest(request_id="r1", requester_account="bob", prompt=prompt,
                                                  input_media=refs))


def test_banked_media_is_judged_by_its_banks_action_and_recorded(sessions, assets) -> None:
    store = BankStore(sessions)
    banker = MediaBanker(store, assets)
    store.create("industry", "block")
    store.create("borderline", "review")
    store.create("licensed", "attribute")
    for bank, rgb, content in (("industry", images.coffee(), "case-1"), ("borderline", images.rocket(), "case-2"),
                               ("licensed", images.astronaut(), "stock-9")):
        hashed = banker.hash_bytes(bank, photos.png_bytes(rgb), "image/png", content, content, "test", "tessa",
                                   note="Stock Photos Ltd")
        store.add(bank, [NewEntry(r["hash"], r["content_id"], r["quality"], r["note"]) for r in hashed.rows],
                  "test", "tessa")
    before = stage("known-media", sessions, assets)

    mirrored = np.ascontiguousarray(images.coffee()[:, ::-1])
    verdict = before.decide(item(assets, media=[jpeg(mirrored)], media_type="image/jpeg"))
    assert verdict.outcome is Outcome.REJECTED
    assert [r.code for r in verdict.reasons] == ["known_media_match"]
    assert "hash bank industry" in verdict.reasons[0].message
    match = verdict.details["matches"][0]
    assert match["bank"] == "industry" and match["content_id"] == "case-1" and match["distance"] <= 31
    assert isinstance(match["entry"], int)

    assert before.decide(item(assets, media=[photos.png_bytes(images.rocket())])).outcome is Outcome.REVIEW
    allowed = before.decide(item(assets, media=[photos.png_bytes(images.astronaut())]))
    assert allowed.outcome is Outcome.APPROVED
    assert allowed.details["attributions"] == [{"bank": "licensed", "content_id": "stock-9",
                                                "note": "Stock Photos Ltd"}]
    clean = before.decide(item(assets, media=[photos.png_bytes(images.chelsea())]))
    assert clean.outcome is Outcome.APPROVED and clean.details["matches"] == []
    assert clean.details["hashed"][0]["hashed"] == 1

    store.remove("industry", content_id="case-1")  # a bank change reaches the next decision
    assert before.decide(item(assets, media=[jpeg(mirrored)], media_type="image/jpeg")).outcome is Outcome.APPROVED

    broken = before.decide(item(assets, media=[b"not an image"]))
    assert broken.outcome is Outcome.REJECTED and broken.reasons[0].code == "media_unreadable"
    assert stage("known-media-post", sessions, assets).decide(item(assets)).reasons[0].code == "no_generated_video"


def test_rights_holders_decide_by_name_and_by_reference_image(sessions, assets) -> None:
    registry = SqlRightsRegistry(sessions, MediaBanker(BankStore(sessions), assets))
    cat = assets.put(photos.png_bytes(images.chelsea()), "image/png")

    def work(work_id, name, choice, offset, aliases=(), references=(), removed=False):
        return registry.apply(RightsEvent(event_id=f"e{offset}", work_id=work_id, holder_id="studio",
                                          holder_name="Big Studio", kind="character", name=name,
                                          aliases=list(aliases), choice=choice, reference_media=list(references),
                                          removed=removed), offset)

    assert work("cat-1", "Whiskers the Cat", "blocked", 1, aliases=["Whiskerz"], references=[cat])
    assert work("boat-1", "Boaty McBoatface", "allowed", 2)
    assert work("dog-1", "Sir Barksalot", "review", 3)
    assert not work("cat-1", "Whiskers the Cat", "allowed", 1), "an older record never overwrites a newer one"
    assert [b.name for b, n in BankStore(sessions).banks() if n] == [RIGHTS_REFERENCES]
    before = stage("known-media", sessions, assets)

    by_name = before.decide(item(assets, prompt="W h i s k e r z chasing a laser"))
    assert by_name.outcome is Outcome.REJECTED and by_name.reasons[0].code == "rights_blocked"
    assert "Whiskers the Cat" in by_name.reasons[0].message and "Big Studio" in by_name.reasons[0].message
    by_image = before.decide(item(assets, media=[jpeg(images.chelsea()[::2, ::2])], media_type="image/jpeg"))
    assert by_image.outcome is Outcome.REJECTED and by_image.reasons[0].code == "rights_blocked"
    assert by_image.details["matches"][0]["bank"] == RIGHTS_REFERENCES

    opted_in = before.decide(item(assets, prompt="boaty mcboatface on a lake"))
    assert opted_in.outcome is Outcome.APPROVED
    assert opted_in.details["attributions"] == [{"work_id": "boat-1", "name": "Boaty McBoatface",
                                                 "kind": "character", "holder_id": "studio",
                                                 "holder": "Big Studio", "choice": "allowed"}]
    decided = StageDecision(request_id="r1", stage="known-media", outcome=Outcome.APPROVED, policy_id="p",
                            policy_version="v", decided_at=datetime.now(timezone.utc), details=opted_in.details)
    assert attributions_of(PipelineItem(request=item(assets).request, decisions=[decided])) == \
        opted_in.details["attributions"]
    assert before.decide(item(assets, prompt="sir barksalot at the park")).outcome is Outcome.REVIEW

    assert work("cat-1", "Whiskers the Cat", "blocked", 4, removed=True)
    assert before.decide(item(assets, prompt="whiskers the cat")).outcome is Outcome.APPROVED
    assert BankStore(sessions).entries(RIGHTS_REFERENCES) == [], "a removed work leaves no hashes behind"


def test_a_takedown_banks_the_video_and_a_restoring_appeal_releases_it(sessions, assets) -> None:
    store = BankStore(sessions)
    banker = MediaBanker(store, assets, Sampling(every=2, max_frames=30))
    video = photos.mp4_bytes([images.coffee()[:256, :256]] * 6 + [images.chelsea()[:256, :256]] * 6)
    hashed = banker.hash_references(TAKEN_DOWN, [assets.put(video, "video/mp4")], "req-1", "takedown:req-1",
                                    "takedown")
    with sessions.begin() as session:
        assert banker.replace(session, TAKEN_DOWN, "req-1", hashed.rows) == 2
    assert store.get(TAKEN_DOWN).action == "block"
    before = stage("known-media", sessions, assets)
    again = before.decide(item(assets, media=[video], media_type="video/mp4"))
    assert again.outcome is Outcome.REJECTED and again.reasons[0].code == "known_media_taken_down"
    one_frame = before.decide(item(assets, media=[jpeg(images.chelsea()[:256, :256], 60)], media_type="image/jpeg"))
    assert one_frame.outcome is Outcome.REJECTED, "a single frame of it is the same video coming back"
    assert store.remove(TAKEN_DOWN, content_id="req-1") == 2
    assert before.decide(item(assets, media=[video], media_type="video/mp4")).outcome is Outcome.APPROVED


def test_media_without_a_usable_hash_is_reported_not_banked(sessions, assets) -> None:
    banker = MediaBanker(BankStore(sessions), assets)
    flat = banker.hash_bytes("x", photos.png_bytes(np.full((64, 64, 3), 200, np.uint8)), "image/png", "flat.png",
                             "flat", "cli", "tessa")
    assert flat.rows == [] and "quality below 50" in flat.problems[0]
    missing = banker.hash_references("x", [MediaReference(uri="file:///nowhere", sha256="0" * 64,
                                                          media_type="image/png")], "c", "s", "t")
    assert missing.rows == [] and missing.problems
