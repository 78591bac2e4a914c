"""Viewers' reports: absorbed per reporter, weighed by category, and past a threshold a case for a person.

    feed.reports --UserReport--> ReportDesk.apply (the registries worker's reports agent)
        the item was never published ...... refused: a dead letter naming the request (nothing is lost)
        same reporter, same item ........... absorbed (reports is unique per item and reporter)
        weights of its reports >= threshold  report_cases row, pending: the console's report queue
    a person decides the case (console, or `trustreel report confirm|dismiss`):
        confirm -> one takedown (feed.takedowns, reason report_confirmed), which is a strike against
                   the video's author (pipeline.enforcement.standing); a repeated confirm re-sends it
        dismiss -> the case closes; the item stays up

Every step is a row written once under a unique key, so a redelivered report or a repeated decision
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import (DecisionRow, ReportCaseRow, ReportRow, RequestRow, StaffActionRow, TakedownRow,
                               in_chunks)
from pipeline.cases.takedowns import TakedownService
from pipeline.enforcement.rules import EnforcementRules
from pipeline.state.feeds import RecordRefused
from pipeline.transport.transactions import OutgoingMessage
from policies.loader import LoadedPolicy
from schemas.models import Outcome, Reason, TakedownCause, UserReport


class ReportCaseError(Exception):
    """No case to decide (unknown, or decided by someone else); says why."""


class ReportDesk:
    """The reports feed's registry: `apply` is what the agent runs for each record."""

    def __init__(self, sessions: sessionmaker, policy: Callable[[], LoadedPolicy[EnforcementRules]],
                 publish_stage: str = "publish") -> None:
        self._sessions = sessions
        self._policy = policy
        self._publish_stage = publish_stage

    def apply(self, report: UserReport, offset: int) -> bool:
        """True when the report counted (a new reporter on a published item)."""
        policy = self._policy()
        rules = policy.rules.reports
        now = datetime.now(timezone.utc)
        with self._sessions() as session:
            published = session.scalar(select(DecisionRow.id).where(
                DecisionRow.request_id == report.request_id, DecisionRow.stage == self._publish_stage,
                DecisionRow.outcome == Outcome.APPROVED.value))
        if published is None:
            raise RecordRefused("report_not_published",
                                f"report {report.report_id} is on request {report.request_id}, which was never "
                                f"published; check the request id the app sent")
        try:
            with self._sessions.begin() as session:
                session.add(ReportRow(report_id=report.report_id, request_id=report.request_id,
                                      reporter=report.reporter, category=report.category.value, text=report.text,
                                      weight=rules.weight(report.category), reported_at=report.reported_at,
                                      received_at=now))
        except IntegrityError:
            return False  # this report again, or this reporter again on this item: absorbed
        score = self.score(report.request_id)
        with self._sessions() as session:
            already_down = session.get(TakedownRow, report.request_id) is not None
        if score >= rules.threshold and not already_down:
            try:
                with self._sessions.begin() as session:
                    session.add(ReportCaseRow(request_id=report.request_id, score=score, status="pending",
                                              policy_version=policy.version, opened_at=now))
            except IntegrityError:
                with self._sessions.begin() as session:  # the case is open (or decided): keep its score current
                    session.execute(update(ReportCaseRow).where(ReportCaseRow.request_id == report.request_id)
                                    .values(score=score))
        return True

    def score(self, request_id: str) -> float:
        with self._sessions() as session:
            return float(session.scalar(select(func.coalesce(func.sum(ReportRow.weight), 0.0))
                                        .where(ReportRow.request_id == request_id)))


@dataclass(frozen=True)
class ReportDecision:
    request_id: str
    status: str  # confirmed | dismissed
    takedowns: list[OutgoingMessage]  # to send (a confirm repeated after a crash re-sends them)


def decide_case(sessions: sessionmaker, takedowns: TakedownService, request_id: str, confirm: bool, reviewer: str,
                note: str, now: datetime | None = None) -> ReportDecision:
    """Claim the pending case for `reviewer` (one wins; a second is told who decided), then act on it."""
    now = now or datetime.now(timezone.utc)
    status = "confirmed" if confirm else "dismissed"
    with sessions.begin() as session:
        claimed = session.execute(update(ReportCaseRow).where(ReportCaseRow.request_id == request_id,
                                                              ReportCaseRow.status == "pending")
                                  .values(status=status, reviewer=reviewer, note=note, resolved_at=now)).rowcount
        row = session.get(ReportCaseRow, request_id)
        if row is None:
            raise ReportCaseError(f"request {request_id} has no report case")
        if claimed:
            session.add(StaffActionRow(actor=reviewer, action=f"report_{status}", target=request_id, note=note,
                                       at=now))
    if not claimed and (row.status != status or row.reviewer != reviewer):
        raise ReportCaseError(f"the reports on {request_id} were already {row.status} by {row.reviewer} "
                              f"at {row.resolved_at}")
    if not confirm:
        return ReportDecision(request_id, status, [])
    cause = TakedownCause(kind="report_confirmed", event_id=f"report:{request_id}", decided_by=reviewer,
                          report_score=row.score)
    reason = Reason(code="report_confirmed",
                    message="Viewers reported this video and a reviewer confirmed that it breaks the rules"
                            + (f": {note}" if note else "."))
    return ReportDecision(request_id, status, takedowns.take_down(request_id, cause, reason))


def report_cases(sessions: sessionmaker, status: str = "pending") -> list[dict]:
    """The report queue, oldest first, with each case's reports by category."""
    with sessions() as session:
        cases = session.execute(select(ReportCaseRow, RequestRow.requester_account)
                                .join(RequestRow, RequestRow.request_id == ReportCaseRow.request_id)
                                .where(ReportCaseRow.status == status)
                                .order_by(ReportCaseRow.opened_at)).all()
        counts: dict[str, dict[str, int]] = {}
        for chunk in in_chunks([case.request_id for case, _ in cases]):
            for request_id, category, count in session.execute(
                    select(ReportRow.request_id, ReportRow.category, func.count())
                    .where(ReportRow.request_id.in_(chunk))
                    .group_by(ReportRow.request_id, ReportRow.category)):
                counts.setdefault(request_id, {})[category] = count
    return [{"request_id": case.request_id, "author": author, "score": case.score,
             "reports": counts.get(case.request_id, {}), "opened_at": case.opened_at.isoformat(),
             "status": case.status} for case, author in cases]
