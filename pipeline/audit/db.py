"""Audit database: tables, engine and schema upgrade.

Auditors query these tables directly, so names are plain and every decision row
carries the policy id and content hash that made it. Schema changes go through
Alembic (migrations/); `upgrade()` brings any database to head.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from importlib import resources
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.types import TypeDecorator
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


class UtcDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone; we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous in the audit log; pass an aware one")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class RequestRow(Base):
    """A request as first seen by the pipeline; written once, by whichever stage sees it first."""

    __tablename__ = "requests"

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    requester_account: Mapped[str] = mapped_column(String(128), index=True)
    prompt: Mapped[str] = mapped_column(Text)
    cameo_ids: Mapped[list[str]] = mapped_column(JSON)
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    original: Mapped[str | None] = mapped_column(Text, nullable=True)  # the GenerationRequest JSON (appeals)
    expired_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)  # retention ran


class RequestCameoRow(Base):
    """Which cameos a request used: indexed so "every item that used cameo X" is one index range."""

    __tablename__ = "request_cameos"

    request_id: Mapped[str] = mapped_column(String(128), ForeignKey("requests.request_id"), primary_key=True)
    cameo_id: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)


class ReviewRow(Base):
    """A request parked for a person (a policy's review outcome, or an appeal of a rejection)."""

    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("request_id", "stage", "kind", name="uq_reviews_request_stage_kind"),
                      Index("ix_reviews_status_created", "status", "created_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(128), ForeignKey("requests.request_id"))
    stage: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # review | appeal
    status: Mapped[str] = mapped_column(String(16))  # pending | approved | rejected
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # the ReviewRequest
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    reviewer: Mapped[str | None] = mapped_column(String(128), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    send_claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)  # audit.send_once
    send_partition: Mapped[int | None] = mapped_column(Integer, nullable=True)
    send_after: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    escalated_by: Mapped[str | None] = mapped_column(String(128), nullable=True)  # then only a senior decides
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class TakedownRow(Base):
    """One takedown per published item, ever; the event sent to feed.takedowns is kept to re-send as is."""

    __tablename__ = "takedowns"

    request_id: Mapped[str] = mapped_column(String(128), ForeignKey("requests.request_id"), primary_key=True)
    cause_event_id: Mapped[str] = mapped_column(String(128), index=True)
    reason_code: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)  # sweeps outside a transaction
    send_claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)  # audit.send_once
    send_partition: Mapped[int | None] = mapped_column(Integer, nullable=True)
    send_after: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class DecisionRow(Base):
    """One stage's decision on one request. (request_id, stage) is unique: redelivery is absorbed here."""

    __tablename__ = "decisions"
    __table_args__ = (
        UniqueConstraint("request_id", "stage", name="uq_decisions_request_stage"),
        Index("ix_decisions_stage_outcome_decided", "stage", "outcome", "decided_at"),
        Index("ix_decisions_outcome_decided", "outcome", "decided_at"),
        Index("ix_decisions_policy_version", "policy_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(128), ForeignKey("requests.request_id"), index=True)
    stage: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    policy_id: Mapped[str] = mapped_column(String(128))
    policy_version: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime())
    duration_ms: Mapped[float] = mapped_column(Float)
    input_topic: Mapped[str] = mapped_column(String(255))
    input_partition: Mapped[int] = mapped_column(Integer)
    input_offset: Mapped[int] = mapped_column(BigInteger)
    output_topic: Mapped[str] = mapped_column(String(255))
    output_payload: Mapped[bytes] = mapped_column(LargeBinary)
    worker: Mapped[str] = mapped_column(String(255))


class DeadLetterRow(Base):
    """Input a stage could not read, keyed on where it came from so redelivery adds nothing."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        UniqueConstraint("source_topic", "source_partition", "source_offset", name="uq_dead_letters_source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stage: Mapped[str] = mapped_column(String(64))
    source_topic: Mapped[str] = mapped_column(String(255))
    source_partition: Mapped[int] = mapped_column(Integer)
    source_offset: Mapped[int] = mapped_column(BigInteger)
    request_id: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)
    error_code: Mapped[str] = mapped_column(String(64))
    error: Mapped[str] = mapped_column(Text)
    original: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CameoRow(Base):
    """Materialized consent state of one cameo (rebuilt from the cameo.consents topic if lost)."""

    __tablename__ = "cameos"

    cameo_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner_account: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)
    audience: Mapped[str | None] = mapped_column(String(16), nullable=True)
    registered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    verified_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    verification_method: Mapped[str | None] = mapped_column(String(64), nullable=True)
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    reference_media: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list of MediaReference
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    registration_offset: Mapped[int] = mapped_column(BigInteger, default=-1)
    verification_offset: Mapped[int] = mapped_column(BigInteger, default=-1)
    revocation_offset: Mapped[int] = mapped_column(BigInteger, default=-1)


class CameoEnrollmentRow(Base):
    """The cameo's verified reference media turned into gallery embeddings (pipeline.state.enrollment).

    One row per cameo: which verification it enrolled (the consent record's offset), whether that
    worked (enrolled / failed / no_reference) and why not, what each reference gave, the policy
    version that judged it, and when the cameo was retired by a revocation.
    """

    __tablename__ = "cameo_enrollments"

    cameo_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    verification_offset: Mapped[int] = mapped_column(BigInteger, default=-1)
    revocation_offset: Mapped[int] = mapped_column(BigInteger, default=-1)
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    findings: Mapped[Any] = mapped_column(JSON, nullable=True)
    policy_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    policy_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    enrolled_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class CameoAccessRow(Base):
    """The owner's explicit allow / deny entry for one account."""

    __tablename__ = "cameo_access"

    cameo_id: Mapped[str] = mapped_column(String(128), ForeignKey("cameos.cameo_id"), primary_key=True)
    account: Mapped[str] = mapped_column(String(128), primary_key=True)
    access: Mapped[str] = mapped_column(String(8))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    source_offset: Mapped[int] = mapped_column(BigInteger)


class AccountRow(Base):
    """Materialized age data of one account (rebuilt from the accounts.events topic if lost)."""

    __tablename__ = "accounts"

    account_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    birth_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    assurance: Mapped[str | None] = mapped_column(String(32), nullable=True)
    parent_account: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)
    generation_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    cameo_use_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    profile_offset: Mapped[int] = mapped_column(BigInteger, default=-1)
    parental_link_offset: Mapped[int] = mapped_column(BigInteger, default=-1)
    parental_controls_offset: Mapped[int] = mapped_column(BigInteger, default=-1)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class GenerationCountRow(Base):
    """Generations charged to an account on one day (policy time zone); the cap compares against this."""

    __tablename__ = "generation_counts"

    account_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class GenerationChargeRow(Base):
    """One row per charged request, so a redelivered request is never charged twice."""

    __tablename__ = "generation_charges"
    __table_args__ = (Index("ix_generation_charges_account_day", "account_id", "day"),)

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(128))
    day: Mapped[date] = mapped_column(Date)
    charged_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ProvenanceMarkRow(Base):
    """What the provenance stage signed for a request: the invisible watermark id leads back here."""

    __tablename__ = "provenance_marks"

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    watermark_id: Mapped[str] = mapped_column(String(32), index=True)
    signed_sha256: Mapped[str] = mapped_column(String(64), index=True)
    source_sha256: Mapped[str] = mapped_column(String(64))
    manifest_label: Mapped[str] = mapped_column(String(200))
    signed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class GalleryIdentityRow(Base):
    """A person in a gallery: a public figure, or a cameo (named by its cameo id)."""

    __tablename__ = "gallery_identities"
    __table_args__ = (UniqueConstraint("gallery", "name", name="uq_gallery_identities_gallery_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gallery: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class GalleryEmbeddingRow(Base):
    """One face embedding of an identity, for one embedding backend (float32 bytes)."""

    __tablename__ = "gallery_embeddings"
    __table_args__ = (Index("ix_gallery_embeddings_backend", "backend"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    identity_id: Mapped[int] = mapped_column(Integer, ForeignKey("gallery_identities.id", ondelete="CASCADE"),
                                             index=True)
    backend: Mapped[str] = mapped_column(String(32))
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    source: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class GalleryVersionRow(Base):
    """Bumped on every gallery change so workers know when to reload their search index."""

    __tablename__ = "gallery_versions"

    backend: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)


class HashBankRow(Base):
    """A bank of known media (pipeline.hashing.banks): what a match means, how close counts, where it came from."""

    __tablename__ = "hash_banks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    action: Mapped[str] = mapped_column(String(16))  # block | review | attribute | rights
    distance: Mapped[int] = mapped_column(Integer)  # largest Hamming distance that counts as a match
    source: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class HashBankEntryRow(Base):
    """One hash in a bank, with what it is of (a request, a work, a list's label) and who added it when."""

    __tablename__ = "hash_bank_entries"
    __table_args__ = (UniqueConstraint("bank", "signal_type", "hash", "content_id", name="uq_hash_bank_entry"),
                      Index("ix_hash_bank_entries_signal_type", "signal_type"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bank: Mapped[str] = mapped_column(String(64), ForeignKey("hash_banks.name", ondelete="CASCADE"), index=True)
    signal_type: Mapped[str] = mapped_column(String(32))
    hash: Mapped[str] = mapped_column(String(128))  # as exchanged: PDQ is 64 lowercase hex digits
    quality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    content_id: Mapped[str] = mapped_column(String(200), index=True)
    note: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(300))
    added_by: Mapped[str] = mapped_column(String(128))
    added_at: Mapped[datetime] = mapped_column(UtcDateTime())


class HashBankVersionRow(Base):
    """Bumped on every bank change, per signal type, so workers know when to reload their indexes."""

    __tablename__ = "hash_bank_versions"

    signal_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)


class RightsWorkRow(Base):
    """A rights holder's protected work (character, work, brand, performer's voice) from rights.registry."""

    __tablename__ = "rights_works"

    work_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder_id: Mapped[str] = mapped_column(String(128), index=True)
    holder_name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    aliases: Mapped[Any] = mapped_column(JSON)
    choice: Mapped[str] = mapped_column(String(16))  # blocked | allowed | review
    reference_media: Mapped[Any] = mapped_column(JSON)
    references_hashed: Mapped[int] = mapped_column(Integer, default=0)
    reference_problems: Mapped[Any] = mapped_column(JSON, nullable=True)
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    source_offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ReviewerRow(Base):
    """A trust and safety staff account of the web console (pipeline.console.accounts)."""

    __tablename__ = "reviewers"

    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)  # argon2id; None: proxy only
    role: Mapped[str] = mapped_column(String(16))  # reviewer | senior
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class ReportRow(Base):
    """One viewer's report on a published item; a second report by the same reporter is absorbed."""

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("request_id", "reporter", name="uq_reports_request_reporter"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[str] = mapped_column(String(128), unique=True)
    request_id: Mapped[str] = mapped_column(String(128), ForeignKey("requests.request_id"), index=True)
    reporter: Mapped[str] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    weight: Mapped[float] = mapped_column(Float)  # the policy's weight of its category when it arrived
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ReportCaseRow(Base):
    """A published item whose reports passed the policy's threshold: the console's report queue."""

    __tablename__ = "report_cases"
    __table_args__ = (Index("ix_report_cases_status_opened", "status", "opened_at"),)

    request_id: Mapped[str] = mapped_column(String(128), ForeignKey("requests.request_id"), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))  # pending | confirmed | dismissed
    policy_version: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    reviewer: Mapped[str | None] = mapped_column(String(128), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class StrikeVoidRow(Base):
    """A strike a senior reviewer struck out on appeal; strikes themselves are derived (pipeline.enforcement)."""

    __tablename__ = "strike_voids"
    __table_args__ = (UniqueConstraint("account", "source", "source_ref", name="uq_strike_voids_strike"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(128), index=True)
    source: Mapped[str] = mapped_column(String(16))  # rejection | takedown
    source_ref: Mapped[str] = mapped_column(String(128))  # the request id
    voided_by: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(Text)
    voided_at: Mapped[datetime] = mapped_column(UtcDateTime())


class StandingAppealRow(Base):
    """An account's appeal of its sanction, decided by a senior reviewer."""

    __tablename__ = "standing_appeals"
    __table_args__ = (Index("ix_standing_appeals_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(128), index=True)
    note: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # pending | approved | rejected
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    reviewer: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decision_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class StaffActionRow(Base):
    """Every action a staff member takes in the console or on an owner's behalf, with who took it."""

    __tablename__ = "staff_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), index=True)
    note: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime())


def bump_version(session: Any, table: type[GalleryVersionRow] | type[HashBankVersionRow], key: str) -> None:
    """In the caller's transaction: move a version counter (a gallery backend's, a signal type's banks'),
    which is how workers learn that their search index must be rebuilt."""
    row = session.get(table, key)
    if row is None:
        session.add(table(**{table.__mapper__.primary_key[0].name: key}, version=1))
    else:
        row.version += 1


def read_version(sessions: sessionmaker, table: type[GalleryVersionRow] | type[HashBankVersionRow], key: str) -> int:
    """A version counter's value (0 before the first change): one row read per check."""
    with sessions() as session:
        row = session.get(table, key)
        return row.version if row is not None else 0


def in_chunks(values: list[str], size: int = 500) -> list[list[str]]:
    """IN lists stay well under SQLite's bound-parameter limit."""
    return [values[start:start + size] for start in range(0, len(values), size)]


def make_engine(url: str) -> Engine:
    """An engine tuned for several workers sharing one SQLite file, or any server database."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str):  # -> alembic.config.Config
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to the given Alembic revision (creating it if empty)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)
