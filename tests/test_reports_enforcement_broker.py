"""Viewers' reports, account enforcement and cameo owners' removals on the real broker.

    reports     one per reporter counts; past the weighted threshold a case opens; confirming it sends one
                takedown and is a strike against the video's author
    enforcement strikes past the policy's points refuse the account before generation (consent) and at
                publish (its re-check), until the sanction runs out
    owners      every request that used an owner's cameo is listed; the owner's removal is one takedown
"""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.audit.db import ReportCaseRow, ReportRow, StaffActionRow, TakedownRow, make_engine, make_sessionmaker
from pipeline.cli import app
from pipeline.settings import Settings
from tests.conftest import policies_with, settings_env, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.stages("consent", "likeness", "publish")]


def cli(settings: Settings, *args: str, expect: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env=settings_env(settings))
    assert result.exit_code == expect, result.output
    return result.output


def submit(settings: Settings, request_id: str, prompt: str = "a cat dances on the beach", *extra: str) -> None:
    cli(settings, "submit", "--requester", "bob", "--prompt", prompt, "--request-id", request_id, *extra)


def rows(settings: Settings, model) -> list:
    sessions = make_sessionmaker(make_engine(settings.db_url))
    with sessions() as session:
        return list(session.scalars(select(model)))


def test_reports_open_a_case_past_the_threshold_and_a_confirmed_one_takes_the_video_down_once(
        settings, start_worker, read_topic) -> None:
    start_worker()
    submit(settings, "cat-video")
    read_topic("feed.published").wait_for_count(1, timeout=90)
    cli(settings, "report", "send", "cat-video", "--reporter", "v1", "--category", "spam", "--report-id", "rep-1")
    cli(settings, "report", "send", "cat-video", "--reporter", "v1", "--category", "hate", "--report-id", "rep-2")
    cli(settings, "report", "send", "cat-video", "--reporter", "v2", "--category", "hate", "--report-id", "rep-3")
    cli(settings, "report", "send", "cat-video", "--reporter", "v2", "--category", "hate", "--report-id", "rep-3")
    cli(settings, "report", "send", "no-such-video", "--reporter", "v3", "--category", "spam")
    letters = read_topic("gen.deadletter").wait_for_count(1, timeout=60)
    assert letters[0]["error_code"] == "report_not_published" and "no-such-video" in letters[0]["error"]
    wait_for(lambda: len(rows(settings, ReportRow)) == 2, 30, what="two counted reports")
    time.sleep(2)
    # v1's second report and rep-3's redelivery are absorbed: 0.5 + 1.5 = 2.0 < 3.0, no case yet
    assert sorted((r.reporter, r.category) for r in rows(settings, ReportRow)) == [("v1", "spam"), ("v2", "hate")]
    assert rows(settings, ReportCaseRow) == []
    cli(settings, "report", "send", "cat-video", "--reporter", "v3", "--category", "child_safety")
    wait_for(lambda: rows(settings, ReportCaseRow), 30, what="a report case")
    cases = json.loads(cli(settings, "report", "cases", "--format", "json"))
    assert [(c["request_id"], c["author"], c["score"]) for c in cases] == [("cat-video", "bob", 5.0)]

    assert "1 takedown sent" in cli(settings, "report", "confirm", "cat-video", "--reviewer", "sam", "--note", "gore")
    assert "already confirmed by sam" in cli(settings, "report", "confirm", "cat-video", "--reviewer", "rita",
                                             expect=1)
    cli(settings, "report", "confirm", "cat-video", "--reviewer", "sam")  # sam again: nothing more is sent
    takedowns = read_topic("feed.takedowns").settle(3)
    assert [(t["request_id"], t["cause"]["kind"], t["cause"]["decided_by"]) for t in takedowns] == [
        ("cat-video", "report_confirmed", "sam")]
    standing = json.loads(cli(settings, "account", "standing", "bob", "--format", "json"))
    assert [(s["source"], s["source_ref"], s["reason_code"]) for s in standing["strikes"]] == [
        ("takedown", "cat-video", "report_confirmed")]
    assert [(a.actor, a.action) for a in rows(settings, StaffActionRow)] == [("sam", "report_confirmed")]


def test_strikes_refuse_the_account_before_generation_and_at_publish_until_the_sanction_runs_out(
        settings, start_worker, read_topic, tmp_path) -> None:
    live = settings.model_copy(update={"policy_dir": policies_with(
        tmp_path / "policies", "enforcement",
        strikes={"window": "1d", "rejection_reasons": {"public_figure_named": 1}, "takedown_reasons": {}},
        sanctions=[{"level": "cooldown", "points": 2, "duration": "40s"}])})
    start_worker("consent", "likeness", settings_override=live)
    submit(live, "in-flight")  # passes consent before the sanction, waits for publish
    wait_for(lambda: read_topic("gen.passed.likeness").poll(), 60, what="in-flight past likeness")
    submit(live, "tom-1", "Tom Hanks eating soup")
    submit(live, "tom-2", "tom hanks waves")
    read_topic("gen.rejected").wait_for_count(2, timeout=60)
    assert "cooldown until" in cli(live, "account", "standing", "bob")
    submit(live, "refused-early")
    start_worker("publish", settings_override=live)
    rejected = {r["request_id"]: r for r in read_topic("gen.rejected").wait_for_count(4, timeout=90)}
    assert (rejected["refused-early"]["stage"], rejected["refused-early"]["reasons"][0]["code"]) == (
        "consent", "account_cooldown")
    assert (rejected["in-flight"]["stage"], rejected["in-flight"]["reasons"][0]["code"]) == (
        "publish", "account_cooldown")
    assert "can appeal" in rejected["in-flight"]["reasons"][0]["message"]
    assert read_topic("feed.published").settle(1) == []

    wait_for(lambda: "in good standing" in cli(live, "account", "standing", "bob"), 60, interval=2,
             what="the cooldown to run out")
    submit(live, "restored")
    published = read_topic("feed.published").wait_for_count(1, timeout=60)
    assert [p["request_id"] for p in published] == ["restored"]


def test_a_senior_reviewer_can_void_the_strikes_of_an_appealed_sanction(settings, start_worker, read_topic,
                                                                         tmp_path) -> None:
    live = settings.model_copy(update={"policy_dir": policies_with(
        tmp_path / "policies", "enforcement",
        strikes={"window": "1d", "rejection_reasons": {"public_figure_named": 1}, "takedown_reasons": {}},
        sanctions=[{"level": "suspension", "points": 2, "duration": "30d"}])})
    start_worker(settings_override=live)
    submit(live, "tom-1", "Tom Hanks eating soup")
    submit(live, "tom-2", "tom hanks waves")
    read_topic("gen.rejected").wait_for_count(2, timeout=60)
    assert "suspension until" in cli(live, "account", "standing", "bob")
    assert "appeal #1" in cli(live, "account", "appeal", "bob", "--note", "it was a sketch about my pet")
    cli(live, "account", "appeal", "bob", expect=1)  # one open appeal at a time
    assert "approved" in cli(live, "account", "decide-appeal", "1", "--approve", "--reviewer", "sam")
    assert "already approved by sam" in cli(live, "account", "decide-appeal", "1", "--reject", "--reviewer", "rita",
                                            expect=1)
    standing = cli(live, "account", "standing", "bob")
    assert "in good standing" in standing and standing.count("voided by sam") == 2
    submit(live, "after-appeal")
    assert [p["request_id"] for p in read_topic("feed.published").wait_for_count(1, timeout=60)] == ["after-appeal"]


def test_a_cameo_owner_sees_every_video_made_with_their_cameo_and_removes_one_once(
        settings, start_worker, read_topic) -> None:
    cli(settings, "cameo", "register", "cam-alice", "--owner", "alice", "--audience", "everyone")
    cli(settings, "cameo", "verify", "cam-alice", "--verified-by", "liveness")
    start_worker()
    submit(settings, "with-alice", "alice skating", "--cameo", "cam-alice")
    submit(settings, "alice-and-tom", "alice and Tom Hanks skating", "--cameo", "cam-alice")
    submit(settings, "without-alice")
    read_topic("feed.published").wait_for_count(2, timeout=90)
    read_topic("gen.rejected").wait_for_count(1, timeout=30)
    listing = {row["request_id"]: row for row in json.loads(cli(settings, "cameo", "videos", "alice", "--format",
                                                                "json"))}
    assert set(listing) == {"with-alice", "alice-and-tom"}  # the rejected one included
    assert listing["with-alice"]["outcome"] == "published"
    assert listing["alice-and-tom"]["outcome"] == "rejected at likeness"
    cli(settings, "cameo", "remove-video", "carol", "with-alice", expect=1)  # not carol's cameo
    cli(settings, "cameo", "remove-video", "alice", "without-alice", expect=1)
    assert "removed by its cameo owner alice" in cli(settings, "cameo", "remove-video", "alice", "with-alice",
                                                     "--note", "I never wanted this")
    assert "already down" in cli(settings, "cameo", "remove-video", "alice", "with-alice")
    takedowns = read_topic("feed.takedowns").settle(3)
    assert [(t["request_id"], t["cause"]["kind"], t["cause"]["account"]) for t in takedowns] == [
        ("with-alice", "owner_removed", "alice")]
    assert "I never wanted this" in takedowns[0]["reason"]["message"]
    assert [row.reason_code for row in rows(settings, TakedownRow)] == ["owner_removed"]
    assert json.loads(cli(settings, "cameo", "videos", "alice", "--format", "json"))[0]["taken_down"] == \
        "owner_removed"
    # an owner's removal is the owner's choice, not the author's fault: no strike
    assert "in good standing" in cli(settings, "account", "standing", "bob")
