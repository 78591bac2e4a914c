"""What a reviewer's click does: the same exactly-once paths as the CLI, with their id on every row.

    approve / reject a review or appeal   pipeline.cases.reviews.resolve -> send_resolution (once, even on a
                                          double click; a second reviewer is told who decided first)
    escalate a review                     only a senior may decide it afterwards
    confirm / dismiss a report case       pipeline.enforcement.reports.decide_case (confirm: one takedown)
    decide a sanction appeal              pipeline.enforcement.appeals.decide_appeal
    remove a video for its cameo owner    pipeline.enforcement.owners.remove_video
Each is also a staff_actions row (actor, action, target, note).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import ReviewRow, StaffActionRow
from pipeline.cases.reviews import ReviewError, resolve, send_resolution
from pipeline.cases.takedowns import TakedownService, send_takedowns
from pipeline.console.accounts import Reviewer, Role
from pipeline.enforcement.appeals import decide_appeal
from pipeline.enforcement.owners import remove_video
from pipeline.enforcement.reports import decide_case
from pipeline.enforcement.standing import StandingBook
from pipeline.producer import PipelineProducer
from pipeline.transport.topics import TopicMap


class ActionRefused(Exception):
    """The action is not allowed for this reviewer or this case; the message says why."""


class ConsoleActions:
    def __init__(self, sessions: sessionmaker, topics: TopicMap, producer: PipelineProducer,
                 takedowns: TakedownService, standing: StandingBook) -> None:
        self._sessions = sessions
        self._topics = topics
        self._sender = producer.once_sender()
        self._takedowns = takedowns
        self._standing = standing

    def needed_role(self, request_id: str) -> Role:
        """Appeals (of rejections and takedowns) and escalated reviews are for seniors."""
        with self._sessions() as session:
            row = session.scalar(select(ReviewRow).where(ReviewRow.request_id == request_id,
                                                         ReviewRow.status == "pending"))
        if row is not None and (row.kind == "appeal" or row.escalated_by):
            return Role.SENIOR
        return Role.REVIEWER

    def decide_review(self, reviewer: Reviewer, request_id: str, approve: bool, note: str) -> str:
        if not reviewer.role.allows(self.needed_role(request_id)):
            raise ActionRefused(f"only a senior reviewer may decide this case ({request_id})")
        resolution = resolve(self._sessions, self._topics, request_id, approve, reviewer.username, note)
        sent = send_resolution(self._sessions, resolution, self._sender)
        self._record(reviewer, f"review_{resolution.status}", request_id, note)
        return f"{request_id}: {resolution.status} (review of {resolution.stage}; {sent.value})"

    def escalate(self, reviewer: Reviewer, request_id: str, note: str) -> str:
        now = datetime.now(timezone.utc)
        with self._sessions.begin() as session:
            moved = session.execute(update(ReviewRow).where(ReviewRow.request_id == request_id,
                                                            ReviewRow.status == "pending",
                                                            ReviewRow.escalated_by.is_(None))
                                    .values(escalated_by=reviewer.username, escalated_at=now)).rowcount
            if moved:
                session.add(StaffActionRow(actor=reviewer.username, action="review_escalated", target=request_id,
                                           note=note, at=now))
        if not moved:
            raise ReviewError(f"request {request_id} has no pending review to escalate (decided or escalated "
                              f"already)")
        return f"{request_id}: escalated to a senior reviewer"

    def decide_report(self, reviewer: Reviewer, request_id: str, confirm: bool, note: str) -> str:
        if confirm and not reviewer.role.allows(Role.SENIOR):
            raise ActionRefused("confirming a report takes the video down: that is for a senior reviewer")
        decision = decide_case(self._sessions, self._takedowns, request_id, confirm, reviewer.username, note)
        send_takedowns(self._sessions, self._sender, decision.takedowns)
        return f"{request_id}: reports {decision.status}" + (", taken down" if decision.takedowns else "")

    def decide_sanction_appeal(self, reviewer: Reviewer, appeal_id: int, approve: bool, note: str) -> str:
        if not reviewer.role.allows(Role.SENIOR):
            raise ActionRefused("sanction appeals are for senior reviewers")
        return decide_appeal(self._sessions, self._standing, appeal_id, approve, reviewer.username, note)

    def remove_for_owner(self, reviewer: Reviewer, owner: str, request_id: str, note: str) -> str:
        if not reviewer.role.allows(Role.SENIOR):
            raise ActionRefused("removing a video for its cameo owner is for senior reviewers")
        messages = remove_video(self._sessions, self._takedowns, owner, request_id, by=reviewer.username, note=note)
        send_takedowns(self._sessions, self._sender, messages)
        return f"{request_id}: removed for its cameo owner {owner}" + ("" if messages else " (it was down already)")

    def _record(self, reviewer: Reviewer, action: str, target: str, note: str) -> None:
        with self._sessions.begin() as session:
            session.add(StaffActionRow(actor=reviewer.username, action=action, target=target, note=note,
                                       at=datetime.now(timezone.utc)))
