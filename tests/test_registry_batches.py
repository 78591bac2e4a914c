"""Registries read from a real SQLite audit database: one cameo or account at a time, or a whole batch's at once."""

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
