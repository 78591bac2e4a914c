"""`trustreel demo`: the whole job on one machine, end to end.

    local broker (started unless --bootstrap-servers names another) -> topics -> audit DB
    -> a tiny random generation model (unless TRUSTREEL_GENERATOR_MODEL names a real one)
    -> a throwaway C2PA signing chain (unless TRUSTREEL_C2PA_CERT_CHAIN names a real one)
    -> one worker process running every stage
       (--secure: a SASL_SSL broker with ACLs, one worker per stage and one for the state feeds, each as its
        own principal; the samples are sent as the cameo app, the account service, the rights desk and a
        requesting service)
    -> sample accounts (adults, a 14-year-old, an 11-year-old) and cameos
       (verified / unverified / revoked / audience-limited), and a rights holder's opted-out character
    -> sample requests covering pass, reject and malformed input
    -> each request's path from the audit database, checked against what it should be
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable

from sqlalchemy import select

import insightface

from pipeline.audit.db import DeadLetterRow, DecisionRow, make_engine, make_sessionmaker, upgrade
from pipeline.audit.queries import request_path
from pipeline.broker import LocalBroker
from pipeline.media.assets import AssetStore, asset_store
from pipeline.producer import PipelineProducer
from pipeline.settings import Settings
from pipeline.state.account_registry import SqlAccountRegistry
from pipeline.state.consent_registry import SqlConsentRegistry
from pipeline.transport.topics import ensure_topics
from pipeline.state.feeds import rights_registry
from schemas.models import AccountEvent, ConsentEvent, ConsentKind, GenerationRequest, MediaReference, RightsEvent


@dataclass(frozen=True)
class Sample:
    label: str
    expected: str
    request: GenerationRequest | None = None
    raw: bytes | None = None


def _uses_local_broker(settings: Settings) -> bool:
    return settings.bootstrap in {f"127.0.0.1:{settings.broker_port}", f"localhost:{settings.broker_port}"}


def _insightface_image(name: str) -> Path:
    """Sample photos that ship inside the insightface package (no download)."""
    return Path(insightface.__file__).parent / "data" / "images" / name


def _alice_photos() -> tuple[bytes, bytes]:
    """Alice: one person's head cut from insightface's group photo (a reference must show one face),
    and a mirrored copy, the "other photo of her" that she and her friend upload."""
    import io

    from PIL import Image, ImageOps

    with Image.open(_insightface_image("t1.jpg")) as group:
        head = group.convert("RGB").crop((1058, 223, 1286, 450))  # the rightmost of the six faces
    encoded = []
    for image in (head, ImageOps.mirror(head)):
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        encoded.append(buffer.getvalue())
    return encoded[0], encoded[1]


def _consents(run: str, alice_reference: MediaReference) -> list[ConsentEvent]:
    def event(cameo: str, kind: str, **fields: object) -> ConsentEvent:
        return ConsentEvent(event_id=str(uuid.uuid4()), cameo_id=f"{cameo}-{run}", kind=kind, **fields)

    return [
        event("cameo-alice", "register", owner_account="alice", audience="approved"),
        event("cameo-alice", "verify", verified_by="liveness-service", verification_method="liveness",
              reference_media=[alice_reference]),
        event("cameo-alice", "grant", account="bob", access="allow"),
        event("cameo-dave", "register", owner_account="dave", audience="everyone"),
        event("cameo-erin", "register", owner_account="erin", audience="everyone"),
        event("cameo-erin", "verify", verified_by="liveness-service", verification_method="liveness"),
        event("cameo-erin", "revoke", reason="owner withdrew consent"),
    ]


def _accounts(run: str) -> list[AccountEvent]:
    """Birth dates for the sample accounts: most are adults, one is 14 and one is 11."""
    today = date.today()

    def born(account: str, years_ago: int, assurance: str = "self_declared") -> AccountEvent:
        birth = today.replace(year=today.year - years_ago, day=min(today.day, 28)) - timedelta(days=1)
        return AccountEvent(event_id=str(uuid.uuid4()), account_id=account, kind="profile", birth_date=birth,
                            assurance=assurance)

    return [born(name, 30) for name in ("alice", "bob", "carol", "mallory", "dave", "erin")] + [
        born(f"teen-{run}", 14, "estimated"), born(f"child-{run}", 11, "estimated")]


def _rights(run: str) -> list[RightsEvent]:
    """A studio that opted its character out of videos."""
    return [RightsEvent(event_id=f"rights-{run}", work_id=f"whiskers-{run}", holder_id="big-studio",
                        holder_name="Big Studio", kind="character", name="Captain Whiskers",
                        aliases=["Cpt. Whiskers"], choice="blocked")]


def _samples(run: str, assets: AssetStore, alice_photo: MediaReference) -> list[Sample]:
    def request(name: str, requester: str, prompt: str, *cameos: str, labels: tuple[str, ...] = (),
                media: tuple[MediaReference, ...] = (), seconds: float = 1.0) -> GenerationRequest:
        # Small and short: the demo generates on a CPU (a real deployment asks for 720x1280);
        # 256x256 is the smallest frame the invisible watermark fits in.
        return GenerationRequest(request_id=f"{name}-{run}", requester_account=requester, prompt=prompt,
                                 cameo_ids=[f"{cameo}-{run}" for cameo in cameos], content_labels=list(labels),
                                 input_media=list(media), duration_seconds=seconds,
                                 resolution={"width": 256, "height": 256})

    def _sample_photo() -> MediaReference:
        """A real portrait, put in the asset store."""
        return assets.put(_insightface_image("Tom_Hanks_54745.png").read_bytes(), "image/png")

    # Each sample that breaks a rule comes from its own account of this run: rejections like these are strikes
    # (policies/enforcement.yaml), and a few from one account would put it under a cooldown.
    return [
        Sample("approved friend uses a cameo", "published",
               request("friend", "bob", "alice and me surfing at sunset", "cameo-alice")),
        Sample("owner uses own cameo", "published",
               request("owner", "alice", "me as an astronaut", "cameo-alice")),
        Sample("approved friend uploads a photo of the cameo's owner", "published",
               request("friend-photo", "bob", "alice and me at the beach", "cameo-alice", media=(alice_photo,))),
        Sample("a photo of a cameo's owner, without her cameo", "rejected at likeness",
               request("owner-photo-no-cameo", f"dana-{run}", "this woman dancing", media=(alice_photo,))),
        Sample("no cameo at all", "published", request("plain", "carol", "a paper boat on a river")),
        Sample("stranger uses a limited cameo", "rejected at consent",
               request("stranger", "mallory", "alice dancing", "cameo-alice")),
        Sample("unknown cameo", "rejected at consent", request("unknown", "bob", "who is this", "cameo-nobody")),
        Sample("unverified cameo", "rejected at consent", request("unverified", "bob", "dave cooking", "cameo-dave")),
        Sample("revoked cameo", "rejected at consent", request("revoked", "bob", "erin skiing", "cameo-erin")),
        Sample("prompt names a public figure (leetspeak)", "rejected at likeness",
               request("famous", f"hank-{run}", "T0m H4nks eating a burger")),
        Sample("prompt names a character its rights holder opted out of", "rejected at known-media",
               request("character", f"fred-{run}", "cpt whiskers saves the day")),
        Sample("input photo of a person who never consented", "rejected at likeness",
               request("photo", f"gina-{run}", "make this man dance", media=(_sample_photo(),))),
        Sample("a video longer than policy allows", "rejected at generate",
               request("long", "carol", "a very long paper boat journey", seconds=60)),
        Sample("an 11-year-old's account", "rejected at age", request("child", f"child-{run}", "my dog flying")),
        Sample("a 14-year-old asks for mature content", "rejected at age",
               request("teen", f"teen-{run}", "a horror scene", labels=["mature"])),
        Sample("a 14-year-old asks for an explicit scene (no labels declared)", "rejected at content",
               request("teen-explicit", f"teen-{run}", "explicit sex scene, fully nude, graphic")),
        Sample("a tricky benign prompt (sport and slang, no violence)", "published",
               request("benign-tricky", "carol", "shooting a three pointer at the buzzer, the crowd is killing it")),
        Sample("malformed JSON", "dead letter", raw=b'{"request_id": "broken-' + run.encode() + b'", '),
        Sample("wrong schema version", "dead letter",
               raw=f'{{"schema_version": 99, "request_id": "future-{run}"}}'.encode()),
        Sample("missing fields", "dead letter",
               raw=f'{{"schema_version": 1, "request_id": "partial-{run}", "prompt": "x"}}'.encode()),
    ]


def _outcome(sessions, sample: Sample) -> tuple[str, str]:
    """(final outcome, printable path) for one sample, from the audit database."""
    if sample.request is not None:
        path = request_path(sessions, sample.request.request_id)
        return (path.final_outcome, path.render()) if path else ("not seen yet", "")
    digest = hashlib.sha256(sample.raw).digest()
    with sessions() as session:
        for letter in session.scalars(select(DeadLetterRow).order_by(DeadLetterRow.id.desc()).limit(200)):
            if hashlib.sha256(letter.original).digest() == digest:
                return "dead letter", (f"message {sample.raw[:60]!r}\n  dead letter at {letter.stage}: "
                                       f"{letter.error_code}: {letter.error}\n  outcome: dead letter")
    return "not seen yet", ""


def _signed_video_note(sessions, sample: Sample, settings: Settings, signing: dict[str, str]) -> str:
    """Where a published sample's signed video is, and how to check it."""
    if sample.request is None:
        return ""
    with sessions() as session:
        details = session.scalar(select(DecisionRow.details).where(
            DecisionRow.request_id == sample.request.request_id, DecisionRow.stage == "provenance"))
    if not details or "signed_sha256" not in details:
        return ""
    digest = details["signed_sha256"]
    where = settings.asset_dir / digest[:2] / digest if not settings.asset_url else f"asset://sha256/{digest}"
    anchors = signing.get("TRUSTREEL_C2PA_TRUST_ANCHORS")
    trust = f"TRUSTREEL_C2PA_TRUST_ANCHORS={os.path.relpath(anchors)} " if anchors else ""
    return f"\n  signed video: {where}\n  check it:     {trust}trustreel verify {where}"


def _consent_applied(registry: SqlConsentRegistry, event: ConsentEvent) -> bool:
    """Whether the registry shows this event (a verification with its enrollment recorded)."""
    state = registry.get(event.cameo_id)
    if state is None:
        return False
    if event.kind is ConsentKind.VERIFY:
        return state.verified_at is not None and (not event.reference_media or state.enrollment_status is not None)
    if event.kind is ConsentKind.REVOKE and event.account is None:
        return state.revoked_at is not None
    if event.kind is ConsentKind.GRANT:
        return event.account in state.access
    return True


def _wait_for(registry: Any, items: Iterable, timeout_seconds: float,
              applied: Callable[[Any, Any], bool] = lambda registry, entity_id: registry.get(entity_id) is not None
              ) -> None:
    """Until the registry shows every item (an entity id, or with `applied`, an event)."""
    items = list(items)
    deadline = time.monotonic() + timeout_seconds
    while not all(applied(registry, item) for item in items):
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not apply the sample consent, account and rights events in time")
        time.sleep(0.2)


def _demo_generator_model(settings: Settings) -> str:
    """The configured model, or (left at the default hub id) a tiny random one built here, offline."""
    if "TRUSTREEL_GENERATOR_MODEL" in os.environ or "generate" not in settings.stages:
        return settings.generator_model
    from pipeline.generation.tiny_generator import build_tiny_ltx, is_current_tiny_model

    directory = Path("trustreel-tiny-model").resolve()
    if not is_current_tiny_model(directory):  # absent, or built by older code with other configs
        shutil.rmtree(directory, ignore_errors=True)
        build_tiny_ltx(directory)
    print(f"generation uses a tiny randomly initialised model in {directory.name}/ (its videos are noise); "
          f"set TRUSTREEL_GENERATOR_MODEL for a real one")
    return str(directory)


def _demo_signing(settings: Settings) -> dict[str, str]:
    """The configured C2PA credentials, or a throwaway development chain made here."""
    if settings.c2pa_cert_chain is not None or "provenance" not in settings.stages:
        return {}
    from pipeline.provenance.dev_certificates import write_dev_credentials

    credentials = write_dev_credentials(Path("trustreel-dev-c2pa").resolve(), organisation="trustreel demo")
    print(f"videos are signed with a throwaway development certificate in {credentials.cert_chain.parent.name}/; "
          f"set TRUSTREEL_C2PA_* for a real one")
    return {"TRUSTREEL_C2PA_CERT_CHAIN": str(credentials.cert_chain),
            "TRUSTREEL_C2PA_PRIVATE_KEY": str(credentials.private_key),
            "TRUSTREEL_C2PA_TRUST_ANCHORS": str(credentials.trust_anchor)}


SECURE_PORT_OFFSET = 100
"""The secure demo broker's port is the plaintext one's plus this: each keeps its own data."""


def _secure_broker(settings: Settings) -> LocalBroker:
    from pipeline.transport.acl_plan import acl_plan, principals

    broker = LocalBroker(home=settings.broker_home, port=settings.broker_port + SECURE_PORT_OFFSET, secure=True)
    print(f"starting a secure local Kafka broker on {broker.bootstrap} (SASL_SSL, SCRAM-SHA-512, ACLs)")
    broker.start()
    broker.provision(principals(settings), acl_plan(settings))
    return broker


def _as_principal(settings: Settings, broker: LocalBroker | None, principal: str) -> Settings:
    """The settings of a client of the secure broker connecting as `principal` (unchanged otherwise)."""
    if broker is None or not broker.secure:
        return settings
    return broker.client_settings(settings, principal)


def _start_workers(settings: Settings, broker: LocalBroker | None, env: dict[str, str]) -> list[subprocess.Popen]:
    """One worker with every stage; on the secure broker one per stage and one for the state feeds."""
    from pipeline.transport.acl_plan import REGISTRIES, stage_principal

    command = [sys.executable, "-m", "pipeline.cli", "worker"]
    if broker is None or not broker.secure:
        return [subprocess.Popen(command, env=os.environ | env)]
    roles = [(["--state-feeds-only"], REGISTRIES)] + [(["--stage", stage, "--no-state-feeds"], stage_principal(stage))
                                                      for stage in settings.stages]
    return [subprocess.Popen(command + arguments, env=os.environ | env | broker.client_environment(principal))
            for arguments, principal in roles]


def run_demo(settings: Settings, keep_broker: bool = False, timeout_seconds: float = 180.0,
             secure: bool = False) -> int:
    from pipeline.transport.acl_plan import ACCOUNT_SERVICE, ADMIN, CAMEO_APP, REQUESTER, RIGHTS_DESK

    broker = None
    if secure:
        if not _uses_local_broker(settings):
            print("--secure runs its own local broker; leave out --bootstrap-servers")
            return 2
        broker = _secure_broker(settings)
        settings = _as_principal(settings, broker, ADMIN)
    elif _uses_local_broker(settings):
        broker = LocalBroker(home=settings.broker_home, port=settings.broker_port)
        if broker.running_pid() is not None and broker.answers():
            broker = None  # someone started it before us: reuse it and leave it running
        else:
            print(f"starting local Kafka broker on {broker.bootstrap} (first run fetches Kafka from Maven Central)")
            broker.start()
    ensure_topics(settings)
    upgrade(settings.db_url)
    run = uuid.uuid4().hex[:8]
    print(f"demo run {run}: audit database {settings.db_url}")
    generator_model = _demo_generator_model(settings)
    signing = _demo_signing(settings)
    print(f"starting {'a worker per stage, each as its own principal' if secure else 'a worker with every stage'} "
          "(loading the face, content and generation models) ...", flush=True)
    workers = _start_workers(settings, broker, {"TRUSTREEL_BOOTSTRAP": settings.bootstrap,
                                                "TRUSTREEL_DB_URL": settings.db_url,
                                                "TRUSTREEL_ASSET_DIR": str(settings.asset_dir.resolve()),
                                                "TRUSTREEL_GENERATOR_MODEL": generator_model} | signing)
    assets = asset_store(settings.asset_dir, settings.asset_url)
    alice_reference, alice_photo = _alice_photos()
    samples = _samples(run, assets, assets.put(alice_photo, "image/png"))
    try:
        sessions = make_sessionmaker(make_engine(settings.db_url))
        consents, accounts = _consents(run, assets.put(alice_reference, "image/png")), _accounts(run)
        works = _rights(run)
        with PipelineProducer(_as_principal(settings, broker, CAMEO_APP)) as cameo_app:
            for event in consents:
                cameo_app.send_consent(event)
        with PipelineProducer(_as_principal(settings, broker, ACCOUNT_SERVICE)) as account_service:
            for account in accounts:
                account_service.send_account_event(account)
        with PipelineProducer(_as_principal(settings, broker, RIGHTS_DESK)) as rights_desk:
            for work in works:
                rights_desk.send_rights(work)
        with PipelineProducer(_as_principal(settings, broker, REQUESTER)) as producer:
            # Consent, accounts and requests travel on different topics; the app lets people use the
            # service once their setup is confirmed, so wait for the registries like the app would.
            print("waiting for the worker to register the sample cameos, accounts and rights ...", flush=True)
            _wait_for(SqlConsentRegistry(sessions), consents, timeout_seconds, _consent_applied)
            _wait_for(SqlAccountRegistry(sessions), {event.account_id for event in accounts}, timeout_seconds)
            _wait_for(rights_registry(settings, sessions), {work.work_id for work in works}, timeout_seconds)
            print(f"sending {len(samples)} sample requests ...", flush=True)
            for sample in samples:
                if sample.request is not None:
                    producer.submit(sample.request)
                else:
                    producer.send_raw("gen.requests", sample.raw)
        deadline = time.monotonic() + timeout_seconds
        results: dict[str, tuple[str, str]] = {}
        while time.monotonic() < deadline and len(results) < len(samples):
            for sample in samples:
                if sample.label not in results:
                    outcome, text = _outcome(sessions, sample)
                    if outcome in ("published", "dead letter") or outcome.startswith("rejected"):
                        results[sample.label] = (outcome, text)
            if any(worker.poll() is not None for worker in workers):
                print(f"a worker exited with {next(w.returncode for w in workers if w.poll() is not None)}")
                break
            time.sleep(0.5)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if broker is not None and not keep_broker:
            broker.stop()
    failures = 0
    for sample in samples:
        outcome, text = results.get(sample.label, ("no outcome within the time limit", ""))
        ok = outcome == sample.expected
        failures += not ok
        print(f"\n[{'ok' if ok else 'UNEXPECTED'}] {sample.label}: expected {sample.expected}, got {outcome}")
        if text:
            print(text + (_signed_video_note(sessions, sample, settings, signing) if outcome == "published" else ""))
    print(f"\n{len(samples) - failures} of {len(samples)} requests ended as expected")
    print(f"\nThe same cases in the web console, with this demo's settings (audit database {settings.db_url}): "
          f"`trustreel console reviewer add NAME --role senior`, then `trustreel console` and open "
          f"http://127.0.0.1:8600/ (run the demo with --keep-running so the console's decisions reach the broker)")
    return 1 if failures else 0
