"""Registries on a real SQLite audit database: read one cameo or account at a time or a whole batch's at once;
apply a feed's batch of account records in one transaction or one by one."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from sqlalchemy import event

from pipeline.audit.db import make_engine, make_sessionmaker, upgrade
from pipeline.runtime.batch_snapshot import batch_snapshot
from pipeline.state.account_registry import SqlAccountRegistry
from pipeline.state.consent_registry import SqlConsentRegistry
from schemas.models import AccountEvent, ConsentEvent


def test_a_batch_reads_its_cameos_and_accounts_at_once_and_the_same_as_one_by_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    cameos, accounts = SqlConsentRegistry(sessions), SqlAccountRegistry(sessions)
    offset = 0
    for number in range(3):
        for change in [dict(kind="register", owner_account=f"owner-{number}", audience="everyone"),
                       dict(kind="verify", verified_by="liveness", verification_method="liveness"),
                       dict(kind="grant", account="friend", access="allow")]:
            offset += 1
            cameos.apply(ConsentEvent(event_id=f"e{offset}", cameo_id=f"cam-{number}", **change), offset)
    cameos.apply(ConsentEvent(event_id="unowned", cameo_id="cam-access-only", kind="grant", account="x",
                              access="allow"), offset + 1)  # access granted before registration: not a cameo yet
    for number, born in enumerate([date(1990, 1, 1), date(2011, 6, 1)]):
        accounts.apply(AccountEvent(event_id=f"a{number}", account_id=f"req-{number}", kind="profile",
                                    birth_date=born, assurance="estimated"), number + 1)
    wanted_cameos = ["cam-0", "cam-1", "cam-2", "cam-access-only", "cam-missing"]
    wanted_accounts = ["req-0", "req-1", "req-missing"]
    alone = ({cameo: cameos.get(cameo) for cameo in wanted_cameos},
             {account: accounts.get(account) for account in wanted_accounts})
    assert alone[0]["cam-1"].owner_account == "owner-1" and alone[0]["cam-1"].access == {"friend": "allow"}
    assert alone[0]["cam-access-only"] is None and alone[0]["cam-missing"] is None
    assert alone[1]["req-1"].birth_date == date(2011, 6, 1) and alone[1]["req-missing"] is None

    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with batch_snapshot(frozenset(wanted_accounts), frozenset(wanted_cameos)):
        batched = ({cameo: cameos.get(cameo) for cameo in reversed(wanted_cameos)},
                   {account: accounts.get(account) for account in reversed(wanted_accounts)})
        again = cameos.get("cam-0"), accounts.get("req-0")
    assert batched == alone
    assert again == (alone[0]["cam-0"], alone[1]["req-0"])
    # cameos, their access lists, their enrollments; then the accounts: four reads for the whole batch
    assert len(statements) == 4, statements


def test_the_owners_of_a_batchs_cameos_are_read_in_one_go_after_its_requesters(tmp_path: Path) -> None:
    """The age checks read each request's account, then its cameos, then each cameo owner's account: the
    owners are no requester of the batch, and read one by one they cost a query each (most of an age
    batch's reads in bench/pipeline.py). The cameo read names them, and the first owner read loads all."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    cameos, accounts = SqlConsentRegistry(sessions), SqlAccountRegistry(sessions)
    for number in range(3):
        cameos.apply(ConsentEvent(event_id=f"r{number}", cameo_id=f"cam-{number}", kind="register",
                                  owner_account=f"owner-{number}", audience="everyone"), number + 1)
    for number, account in enumerate(["req-0", "req-1", "owner-0", "owner-1"]):  # owner-2 has no profile
        accounts.apply(AccountEvent(event_id=f"a{number}", account_id=account, kind="profile",
                                    birth_date=date(1990 + number, 1, 1), assurance="estimated"), number + 1)
    requests = [("req-0", "cam-0"), ("req-1", "cam-1"), ("req-0", "cam-2"), ("req-1", "cam-missing")]

    def age_reads() -> list:
        seen = []
        for requester, cameo_id in requests:
            account = accounts.get(requester)
            cameo = cameos.get(cameo_id)
            seen.append((account, cameo, accounts.get(cameo.owner_account) if cameo else None))
        return seen

    alone = age_reads()
    assert alone[1][2].account_id == "owner-1" and alone[2][2] is None and alone[3][1] is None
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with batch_snapshot(frozenset(r for r, _ in requests), frozenset(c for _, c in requests)):
        assert age_reads() == alone
    # the cameos (with their access lists and enrollments), the requesters, then every owner at once
    assert len(statements) == 5, statements
    assert sum("FROM accounts" in statement for statement in statements) == 2


def sessions_on(tmp_path: Path, name: str):
    """Sessions on a fresh, migrated SQLite file of this name."""
    url = f"sqlite:///{tmp_path / f'{name}.db'}"
    upgrade(url)
    return make_sessionmaker(make_engine(url))


def account_records() -> list[tuple[AccountEvent, int]]:
    """Profiles, a parental link, a repeated slot and a record older than the one already applied."""
    return [(AccountEvent(event_id="p1", account_id="kid", kind="profile", birth_date=date(2013, 2, 1),
                          assurance="verified_document"), 1),
            (AccountEvent(event_id="p2", account_id="parent", kind="profile", birth_date=date(1985, 5, 5),
                          assurance="estimated"), 2),
            (AccountEvent(event_id="l1", account_id="kid", kind="parental_link", parent_account="parent"), 3),
            (AccountEvent(event_id="p3", account_id="kid", kind="profile", birth_date=date(2013, 2, 2),
                          assurance="verified_document"), 4),
            (AccountEvent(event_id="old", account_id="kid", kind="profile", birth_date=date(2000, 1, 1),
                          assurance="self_declared"), 0)]


def test_accounts_applied_as_a_batch_in_one_transaction_equal_one_by_one(tmp_path: Path) -> None:
    alone, batch = (SqlAccountRegistry(sessions_on(tmp_path, name)) for name in ("alone", "batch"))
    assert [alone.apply(event, offset) for event, offset in account_records()] == [True, True, True, True, False]
    assert batch.apply_many(account_records()) == [True, True, True, True, False]
    assert batch.apply_many(account_records()) == [False] * 5  # redelivered: idempotent by offset
    for account in ("kid", "parent"):
        assert batch.states([account]) == alone.states([account])
    assert batch.states(["kid"])["kid"].birth_date == date(2013, 2, 2)


def test_a_feed_batch_keeps_record_order_and_reapplies_one_by_one_when_its_transaction_conflicts(
        tmp_path: Path, monkeypatch) -> None:
    from sqlalchemy.exc import IntegrityError

    from pipeline.state.feeds import StateFeed

    registry = SqlAccountRegistry(sessions_on(tmp_path, "audit"))
    feed = StateFeed("accounts", "accounts.events", AccountEvent, registry)
    values = [(event.model_dump_json().encode(), offset) for event, offset in account_records()]
    records = values[:2] + [(b"{not json", 7), (None, 8)] + values[2:]
    assert [outcome.label for outcome in feed.apply_records(records)] == [
        "applied", "applied", "unreadable", "tombstone", "applied", "applied", "stale"]

    def conflict(records):  # another worker created the same row between our read and our write
        raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))

    fresh = SqlAccountRegistry(sessions_on(tmp_path, "fresh"))
    monkeypatch.setattr(fresh, "apply_many", conflict)
    labels = [outcome.label for outcome in StateFeed("accounts", "t", AccountEvent, fresh).apply_records(values)]
    assert labels == ["applied", "applied", "applied", "applied", "stale"]
    assert fresh.states(["kid"]) == registry.states(["kid"])


def test_consents_applied_as_a_batch_in_one_transaction_equal_one_by_one(tmp_path: Path) -> None:
    records = [(ConsentEvent(event_id="r", cameo_id="cam", kind="register", owner_account="alice",
                             audience="approved"), 1),
               (ConsentEvent(event_id="v", cameo_id="cam", kind="verify", verified_by="liveness",
                             verification_method="liveness"), 2),
               (ConsentEvent(event_id="g1", cameo_id="cam", kind="grant", account="bob", access="allow"), 3),
               (ConsentEvent(event_id="g2", cameo_id="cam", kind="grant", account="bob", access="deny"), 4),
               (ConsentEvent(event_id="x", cameo_id="cam", kind="revoke", account="carol"), 5),
               (ConsentEvent(event_id="g0", cameo_id="cam", kind="grant", account="bob", access="allow"), 0)]
    alone, batch = (SqlConsentRegistry(sessions_on(tmp_path, name)) for name in ("alone", "batch"))
    assert [alone.apply(event, offset) for event, offset in records] == [True] * 5 + [False]
    assert batch.apply_many(records) == [True] * 5 + [False]
    assert batch.apply_many(records) == [False] * 6
    assert batch.states(["cam"]) == alone.states(["cam"])
    assert batch.states(["cam"])["cam"].access == {"bob": "deny", "carol": "none"}


def test_in_order_steps_run_over_the_whole_batch_one_step_after_the_other() -> None:
    from pipeline.state.feeds import InOrder

    seen: list[tuple[str, int]] = []

    class Step:
        def __init__(self, name: str, changes: set[int]) -> None:
            self.name, self.changes = name, changes

        def apply(self, event, offset: int) -> bool:
            seen.append((self.name, offset))
            return offset in self.changes

    class BatchStep(Step):
        def apply_many(self, records):
            seen.append((self.name, -1))
            return [offset in self.changes for _, offset in records]

    chain = InOrder((Step("enroll", {1}), BatchStep("registry", {2})))
    assert chain.apply_many([("a", 1), ("b", 2), ("c", 3)]) == [True, True, False]
    assert seen == [("enroll", 1), ("enroll", 2), ("enroll", 3), ("registry", -1)]
