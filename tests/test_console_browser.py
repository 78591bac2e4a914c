"""The web console in a real browser (Debian's chromium, driven by Selenium) against the real broker.

A reviewer logs in, opens a case parked at likeness (a borderline face in an input video), sees the
video element load the asset through the console's signed link, approves with the keyboard shortcut,
and the request is then published. Unauthenticated visits and form posts without the CSRF token are
refused, and a reviewer cannot act above their role.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.audit.db import DecisionRow, StaffActionRow, make_engine, make_sessionmaker
from pipeline.audit.local_postgres import free_port
from pipeline.cli import app
from pipeline.media.video_files import encode_mp4
from pipeline.settings import Settings
from tests import face_fixtures as photos
from tests.conftest import policies_with, settings_env, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.stages("consent", "likeness", "publish")]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
PASSWORD = "correct horse battery"


def cli(settings: Settings, *args: str, expect: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env=settings_env(settings))
    assert result.exit_code == expect, result.output
    return result.output


@pytest.fixture
def parked_case(settings: Settings, start_worker, read_topic, tmp_path: Path) -> Settings:
    """A request whose input video shows its cameo's owner only borderline-close: parked for a person."""
    live = settings.model_copy(update={"policy_dir": policies_with(
        tmp_path / "policies", "likeness", face_match_distance={"dlib": 0.1, "insightface": 1.0},
        review_distance={"dlib": 0.3})})
    owner, clip = tmp_path / "owner.png", tmp_path / "clip.mp4"
    owner.write_bytes(photos.png_bytes(photos.astronaut()))
    flipped = photos.altered_copies(photos.astronaut())["flip"]
    clip.write_bytes(encode_mp4(np.stack([flipped] * 9), fps=8))
    cli(live, "gallery", "add", "cam-astro", str(owner), "--gallery", "cameos")
    cli(live, "cameo", "register", "cam-astro", "--owner", "bob", "--audience", "only_me")
    cli(live, "cameo", "verify", "cam-astro", "--verified-by", "liveness")
    start_worker(settings_override=live)
    cli(live, "submit", "--requester", "bob", "--prompt", "me on the moon", "--cameo", "cam-astro",
        "--media", str(clip), "--request-id", "moon-walk")
    parked = read_topic("gen.review").wait_for_count(1, timeout=120)
    assert parked[0]["reasons"][0]["code"] == "borderline_cameo_match"
    secret = tmp_path / "console.key"
    secret.write_bytes(os.urandom(32))
    return live.model_copy(update={"console_secret_file": secret})


@contextlib.contextmanager
def serving(settings: Settings, log_path: Path, **env: str) -> Iterator[str]:
    """`trustreel console` as an operator runs it; yields its base URL."""
    port = free_port()
    log = open(log_path, "ab")
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "console", "--port", str(port)],
                               env=os.environ | settings_env(settings) | env, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{base}/login", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(answers, 60, what="the console to answer")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def console(parked_case: Settings, tmp_path: Path) -> Iterator[str]:
    with serving(parked_case, tmp_path / "console.log",
                 TRUSTREEL_CONSOLE_SECRET_FILE=str(parked_case.console_secret_file)) as base:
        yield base


@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromium-driver are needed (.ci/run installs them with apt-get)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_a_reviewer_approves_a_parked_case_in_the_browser_and_it_is_published(
        parked_case, console, browser, read_topic) -> None:
    from selenium.webdriver.common.by import By

    cli(parked_case, "console", "reviewer", "add", "rita", "--role", "reviewer", "--password-file",
        str(_password_file(parked_case)))
    browser.get(f"{console}/cases/moon-walk")
    assert browser.current_url.endswith("/login") and "me on the moon" not in browser.page_source
    browser.find_element(By.ID, "username").send_keys("rita")
    browser.find_element(By.ID, "password").send_keys("wrong password!!")
    browser.find_element(By.ID, "login").click()
    # Checking a password takes a moment on a loaded machine: each answer is waited for, not assumed.
    wait_for(lambda: _shown(browser, "error", "Wrong name or password"), 60, what="the refused login")
    browser.find_element(By.ID, "username").send_keys("rita")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    wait_for(lambda: _shown(browser, "tab-reviews", "Parked reviews (1)"), 60, what="the queues after login")
    browser.find_element(By.CSS_SELECTOR, "a.case-link").click()
    assert "me on the moon" in browser.find_element(By.ID, "prompt").text
    assert "borderline_cameo_match" in browser.find_element(By.ID, "review").text
    assert "cam-astro at" in browser.find_element(By.CSS_SELECTOR, "table.faces").text  # the face evidence
    video = browser.find_element(By.CSS_SELECTOR, "video")
    assert "/media/" in video.get_attribute("src")
    wait_for(lambda: browser.execute_script("return arguments[0].readyState >= 1 && arguments[0].duration > 0;",
                                            video), 30, what="the video element to load the asset")
    assert browser.execute_script("return arguments[0].videoWidth;", video) == 512

    # A post without the CSRF token, with rita's own session cookie, is refused and changes nothing.
    cookies = {cookie["name"]: cookie["value"] for cookie in browser.get_cookies()}
    forged = httpx.post(f"{console}/cases/moon-walk/decide", data={"decision": "reject"}, cookies=cookies)
    assert forged.status_code == 403 and "CSRF" in forged.text
    # Nothing is shown without a session, and a tampered media link is refused.
    anonymous = httpx.get(f"{console}/", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    assert httpx.get(video.get_attribute("src"), follow_redirects=False).status_code == 303
    assert httpx.get(video.get_attribute("src")[:-3] + "xyz", cookies=cookies).status_code == 403

    browser.find_element(By.TAG_NAME, "body").send_keys("a")  # the approve shortcut
    wait_for(lambda: _shown(browser, "flash", "approved"), 60, what="the approval")
    published = read_topic("feed.published").wait_for_count(1, timeout=60)
    assert [p["request_id"] for p in published] == ["moon-walk"]
    assert [d["stage"] for d in published[0]["decisions"]] == ["consent", "likeness", "review-likeness", "publish"]
    sessions = make_sessionmaker(make_engine(parked_case.db_url))
    with sessions() as session:
        review = session.scalar(select(DecisionRow).where(DecisionRow.stage == "review-likeness"))
        actions = session.scalars(select(StaffActionRow)).all()
    assert review.details["reviewer"] == "rita" and review.worker == "rita"
    assert [(a.actor, a.action, a.target) for a in actions] == [("rita", "review_approved", "moon-walk")]


def test_a_reviewer_cannot_act_above_their_role_and_a_second_reviewer_is_told_who_decided(
        parked_case, console) -> None:
    password = str(_password_file(parked_case))
    cli(parked_case, "console", "reviewer", "add", "rita", "--role", "reviewer", "--password-file", password)
    cli(parked_case, "console", "reviewer", "add", "sam", "--role", "senior", "--password-file", password)
    rita, sam = _logged_in(console, "rita"), _logged_in(console, "sam")
    escalated = _post(rita, console, "/cases/moon-walk/decide", decision="escalate", note="is it him?")
    assert "escalated" in escalated.text
    refused = _post(rita, console, "/cases/moon-walk/decide", decision="approve")
    assert "Not done: only a senior reviewer may decide this case" in refused.text
    assert "Only a senior reviewer may decide this case." in refused.text  # no buttons for rita any more
    assert _post(rita, console, "/owners/remove", owner="bob", request_id="moon-walk").status_code == 403
    assert "rejected" in _post(sam, console, "/cases/moon-walk/decide", decision="reject", note="not him").text
    again = _post(sam, console, "/cases/moon-walk/decide", decision="approve")
    assert "already rejected by sam" in again.text
    cli(parked_case, "console", "reviewer", "disable", "rita")
    assert rita.get(f"{console}/", follow_redirects=False).headers["location"] == "/login"


def _shown(browser, element_id: str, text: str) -> bool:
    """Whether the page shows `text` in the element; False while the next page is still on its way.

    The post the shortcut submits can take seconds on a loaded machine: until its answer replaces the
    case page there is no such element, or the one found goes stale mid-read.
    """
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return any(text in element.text for element in browser.find_elements(By.ID, element_id))
    except StaleElementReferenceException:
        return False


def _password_file(settings: Settings) -> Path:
    path = Path(settings.console_secret_file).with_name("password.txt")
    path.write_text(PASSWORD)
    return path


def _csrf(client: httpx.Client, url: str) -> str:
    return _csrf_of(client.get(url).text)


def _logged_in(base: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base, follow_redirects=True, timeout=30)
    token = _csrf(client, "/login")
    answer = client.post("/login", data={"csrf_token": token, "username": username, "password": PASSWORD})
    assert answer.status_code == 200 and username in answer.text
    return client


def _post(client: httpx.Client, base: str, path: str, **fields: str) -> httpx.Response:
    return client.post(path, data={"csrf_token": _csrf(client, "/"), **fields})


def test_behind_a_trusted_proxy_the_header_names_the_reviewer_and_nobody_else_gets_in(settings, tmp_path) -> None:
    cli(settings, "console", "reviewer", "add", "pat", "--role", "senior", "--proxy-only")
    with serving(settings, tmp_path / "proxied.log", TRUSTREEL_CONSOLE_IDENTITY_HEADER="X-Forwarded-User") as base:
        assert "pat (senior)" in httpx.get(f"{base}/", headers={"X-Forwarded-User": "pat"}).text
        assert httpx.get(f"{base}/", headers={"X-Forwarded-User": "mallory"}).headers["location"] == "/login"
        assert httpx.get(f"{base}/").headers["location"] == "/login"
        with httpx.Client(base_url=base) as client:  # a proxy-only account has no password to guess
            token = _csrf_of(client.get("/login").text)
            assert client.post("/login", data={"csrf_token": token, "username": "pat", "password": ""}
                               ).status_code == 401
    with serving(settings, tmp_path / "plain.log") as base:  # the header is not configured: it is ignored
        assert httpx.get(f"{base}/", headers={"X-Forwarded-User": "pat"}).headers["location"] == "/login"


def _csrf_of(page: str) -> str:
    import re

    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_reports_sanction_appeals_owners_and_accounts_are_worked_from_the_console(settings, start_worker, read_topic,
                                                                                  tmp_path) -> None:
    live = settings.model_copy(update={"policy_dir": policies_with(
        tmp_path / "policies", "enforcement",
        strikes={"window": "1d", "rejection_reasons": {"public_figure_named": 1},
                 "takedown_reasons": {"report_confirmed": 1}},
        sanctions=[{"level": "cooldown", "points": 1, "duration": "1d"}])})
    cli(live, "cameo", "register", "cam-alice", "--owner", "alice", "--audience", "everyone")
    cli(live, "cameo", "verify", "cam-alice", "--verified-by", "liveness")
    start_worker(settings_override=live)
    cli(live, "submit", "--requester", "bob", "--prompt", "alice skating", "--cameo", "cam-alice", "--request-id",
        "skate")
    read_topic("feed.published").wait_for_count(1, timeout=90)
    for reporter in ("v1", "v2"):
        cli(live, "report", "send", "skate", "--reporter", reporter, "--category", "impersonation")
    wait_for(lambda: "skate" in cli(live, "report", "cases"), 60, what="a report case")
    cli(live, "submit", "--requester", "dan", "--prompt", "Tom Hanks waves", "--request-id", "tom")
    read_topic("gen.rejected").wait_for_count(1, timeout=60)
    cli(live, "account", "appeal", "dan", "--note", "a lookalike contest")
    password = str(tmp_path / "password.txt")
    Path(password).write_text(PASSWORD)
    cli(live, "console", "reviewer", "add", "rita", "--role", "reviewer", "--password-file", password)
    cli(live, "console", "reviewer", "add", "sam", "--role", "senior", "--password-file", password)
    with serving(live, tmp_path / "console.log") as base:
        rita, sam = _logged_in(base, "rita"), _logged_in(base, "sam")
        queues = rita.get("/?queue=reports").text
        assert "User reports (1)" in queues and "Sanction appeals (1)" in queues and "impersonation x2" in queues
        for queue in ("reviews", "appeals", "takedown-appeals", "sanctions"):
            assert rita.get(f"/?queue={queue}").status_code == 200
        assert rita.get("/?queue=reports&reason=spam").text.count('class="case-link"') == 0  # filtered out
        case = rita.get("/cases/skate").text
        assert "Reports: pending" in case and "confirm-report" not in case  # confirming is for seniors
        assert _post(rita, base, "/cases/skate/report", decision="confirm").status_code == 200
        assert "confirm-report" in sam.get("/cases/skate").text
        assert "skate: reports confirmed, taken down" in _post(sam, base, "/cases/skate/report",
                                                               decision="confirm", note="not alice").text
        takedowns = read_topic("feed.takedowns").settle(3)
        assert [(t["request_id"], t["cause"]["kind"], t["cause"]["decided_by"]) for t in takedowns] == [
            ("skate", "report_confirmed", "sam")]
        assert "cooldown" in sam.get("/accounts?account=bob").text  # the confirmed report is bob's strike
        assert "a lookalike contest" in sam.get("/?queue=sanctions").text
        assert _post(rita, base, "/sanctions/1", decision="approve").status_code == 403
        assert "appeal #1 of account dan: approved" in _post(sam, base, "/sanctions/1", decision="approve").text
        assert "In good standing" in sam.get("/accounts?account=dan").text
        owners = sam.get("/owners?owner=alice").text
        assert "skate" in owners and "report_confirmed" in owners
