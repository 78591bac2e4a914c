"""Routes of the console. Pages are server-rendered (Jinja2, autoescaped); the only script is the keyboard
shortcuts in static/console.js. Every route but /login and /static needs a reviewer (pipeline.console.access).

    GET  /                       queue counts and the chosen queue
                                 (?queue=&stage=&reason=&policy_version=&min_age_hours=)
    GET  /cases/{request_id}     the case page
    POST /cases/{request_id}/decide      approve | reject | escalate (reviews and appeals)
    POST /cases/{request_id}/report      confirm | dismiss (report cases)
    POST /sanctions/{appeal_id}          approve | reject (sanction appeals)
    GET  /owners?owner=ACCOUNT   a cameo owner's videos (support staff);  POST /owners/remove
    GET  /accounts?account=A     an account's standing and strikes
    GET  /media/{token}          an asset, by a signed, expiring token the case page made; hash-checked
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from datetime import datetime, timezone
from pathlib import Path

import jinja2
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from pipeline.audit.db import make_engine, make_sessionmaker
from pipeline.cases.reviews import ReviewError
from pipeline.console.access import CSRF_FIELD, checked_form, csrf_token, current_reviewer, require
from pipeline.console.accounts import Role, check_password
from pipeline.console.actions import ActionRefused, ConsoleActions
from pipeline.console.cases import case_view
from pipeline.console.queues import QUEUES, Filters, queue_counts, queue_items
from pipeline.enforcement.appeals import StandingAppealError
from pipeline.enforcement.owners import OwnerRemovalError, owner_videos
from pipeline.enforcement.reports import ReportCaseError
from pipeline.enforcement.rules import latest_enforcement
from pipeline.enforcement.standing import SqlStandingBook
from pipeline.media.assets import AssetIntegrityError, asset_store
from pipeline.producer import PipelineProducer
from pipeline.settings import Settings
from pipeline.transport.topics import TopicMap
from pipeline.worker.catalog import takedown_service
from schemas.models import MediaReference

log = logging.getLogger("trustreel.console")
HERE = Path(__file__).parent
MEDIA_TOKEN_SECONDS = 3600
REFUSALS = (ReviewError, ReportCaseError, StandingAppealError, OwnerRemovalError, ActionRefused)
SECURITY_HEADERS = {"Content-Security-Policy": "default-src 'self'; object-src 'none'; frame-ancestors 'none'; "
                                               "form-action 'self'; base-uri 'none'",
                    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
                    "Cache-Control": "no-store"}


def session_secret(settings: Settings) -> str:
    if settings.console_secret_file is not None:
        return settings.console_secret_file.read_bytes().strip().hex()
    log.warning("TRUSTREEL_CONSOLE_SECRET_FILE is not set: sessions end when the console restarts")
    return secrets.token_hex(32)


def create_console(settings: Settings) -> Starlette:
    sessions = make_sessionmaker(make_engine(settings.db_url))
    secret = session_secret(settings)
    templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                                       autoescape=True, undefined=jinja2.StrictUndefined))
    signer = URLSafeTimedSerializer(secret, salt="trustreel-console-media")
    assets = asset_store(settings.asset_dir, settings.asset_url)
    standing = SqlStandingBook(sessions, latest_enforcement(settings.policy_dir))
    producer = PipelineProducer(settings)
    actions = ConsoleActions(sessions, TopicMap.from_settings(settings), producer,
                             takedown_service(settings, sessions), standing)

    def page(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
        context |= {"reviewer": current_reviewer(request), "csrf_field": CSRF_FIELD, "csrf": csrf_token(request),
                    "flash": request.session.pop("flash", None), "queues": QUEUES}
        return templates.TemplateResponse(request, template, context, status_code=status_code)

    def back(request: Request, to: str, message: str) -> RedirectResponse:
        request.session["flash"] = message
        return RedirectResponse(to, status_code=303)

    async def login_form(request: Request) -> Response:
        return page(request, "login.html")

    async def login(request: Request) -> Response:
        form = await checked_form(request)
        reviewer = await run_in_threadpool(check_password, sessions, form.get("username", ""), form.get("password", ""))
        if reviewer is None:
            return page(request, "login.html", 401, error="Wrong name or password.")
        request.session.clear()  # a fresh session (and CSRF token) after login: no fixation
        request.session["user"] = reviewer.username
        csrf_token(request)
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        await checked_form(request)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    async def home(request: Request) -> Response:
        require(request)
        queue = request.query_params.get("queue", "reviews")
        if queue not in QUEUES:
            raise HTTPException(404, f"no queue {queue}")
        filters = Filters.from_query(request.query_params)
        counts = await run_in_threadpool(queue_counts, sessions)
        items = await run_in_threadpool(queue_items, sessions, queue, filters)
        return page(request, "queues.html", queue=queue, counts=counts, items=items, filters=filters)

    async def case(request: Request) -> Response:
        reviewer = require(request)
        request_id = request.path_params["request_id"]
        view = await run_in_threadpool(case_view, sessions, request_id)
        if view is None:
            raise HTTPException(404, f"no request {request_id}")
        media = [(role, reference, signer.dumps(reference.model_dump(mode="json"))) for role, reference in view.media]
        needed = await run_in_threadpool(actions.needed_role, request_id)
        return page(request, "case.html", case=view, media=media, may_decide=reviewer.role.allows(needed),
                    is_senior=reviewer.role is Role.SENIOR)

    async def decide(request: Request) -> Response:
        reviewer = require(request)
        form = await checked_form(request)
        request_id = request.path_params["request_id"]
        choice, note = form.get("decision"), form.get("note", "")
        try:
            if choice == "escalate":
                message = await run_in_threadpool(actions.escalate, reviewer, request_id, note)
            elif choice in ("approve", "reject"):
                message = await run_in_threadpool(actions.decide_review, reviewer, request_id, choice == "approve",
                                                  note)
            else:
                raise HTTPException(400, "decision must be approve, reject or escalate")
        except REFUSALS as refused:
            return back(request, f"/cases/{request_id}", f"Not done: {refused}")
        return back(request, "/", message)

    async def report(request: Request) -> Response:
        reviewer = require(request)
        form = await checked_form(request)
        request_id = request.path_params["request_id"]
        if form.get("decision") not in ("confirm", "dismiss"):
            raise HTTPException(400, "decision must be confirm or dismiss")
        try:
            message = await run_in_threadpool(actions.decide_report, reviewer, request_id,
                                              form["decision"] == "confirm", form.get("note", ""))
        except REFUSALS as refused:
            return back(request, f"/cases/{request_id}", f"Not done: {refused}")
        return back(request, "/?queue=reports", message)

    async def sanction(request: Request) -> Response:
        reviewer = require(request, Role.SENIOR)
        form = await checked_form(request)
        try:
            message = await run_in_threadpool(actions.decide_sanction_appeal, reviewer,
                                              int(request.path_params["appeal_id"]),
                                              form.get("decision") == "approve", form.get("note", ""))
        except REFUSALS as refused:
            message = f"Not done: {refused}"
        return back(request, "/?queue=sanctions", message)

    async def owners(request: Request) -> Response:
        reviewer = require(request)
        owner = request.query_params.get("owner", "").strip()
        rows = await run_in_threadpool(owner_videos, sessions, owner) if owner else []
        return page(request, "owner.html", owner=owner, rows=rows, is_senior=reviewer.role is Role.SENIOR)

    async def owner_remove(request: Request) -> Response:
        reviewer = require(request, Role.SENIOR)
        form = await checked_form(request)
        owner = form.get("owner", "")
        try:
            message = await run_in_threadpool(actions.remove_for_owner, reviewer, owner, form.get("request_id", ""),
                                              form.get("note", ""))
        except REFUSALS as refused:
            message = f"Not done: {refused}"
        return back(request, f"/owners?owner={owner}", message)

    async def accounts(request: Request) -> Response:
        require(request)
        account = request.query_params.get("account", "").strip()
        found = (await run_in_threadpool(standing.standing, account, datetime.now(timezone.utc))
                 if account else None)
        return page(request, "account.html", account=account, standing=found)

    async def media(request: Request) -> Response:
        require(request)
        try:
            reference = MediaReference.model_validate(signer.loads(request.path_params["token"],
                                                                   max_age=MEDIA_TOKEN_SECONDS))
        except (BadSignature, ValueError):
            raise HTTPException(403, "This media link is not valid (expired or not made by the console).") from None
        try:
            data = await run_in_threadpool(assets.get, reference)
        except AssetIntegrityError as problem:
            raise HTTPException(409, f"The stored file failed its integrity check: {problem}") from None
        return _ranged(request, data, reference.media_type)

    async def refused(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 401:
            return RedirectResponse("/login", status_code=303)
        return page(request, "error.html", exc.status_code, status=exc.status_code, message=exc.detail)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette):
        yield
        await run_in_threadpool(producer.close)

    app = Starlette(routes=[
        Route("/login", login_form, methods=["GET"]), Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]), Route("/", home),
        Route("/cases/{request_id}", case), Route("/cases/{request_id}/decide", decide, methods=["POST"]),
        Route("/cases/{request_id}/report", report, methods=["POST"]),
        Route("/sanctions/{appeal_id:int}", sanction, methods=["POST"]),
        Route("/owners", owners), Route("/owners/remove", owner_remove, methods=["POST"]),
        Route("/accounts", accounts), Route("/media/{token}", media),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ], middleware=[Middleware(SecurityHeaders),
                   Middleware(SessionMiddleware, secret_key=secret, session_cookie="trustreel_console",
                              max_age=int(settings.console_session_hours * 3600), same_site="strict",
                              https_only=settings.console_secure_cookies)],
        exception_handlers={HTTPException: refused}, lifespan=lifespan)
    app.state.sessions = sessions
    app.state.settings = settings
    return app


class SecurityHeaders:
    """Pure ASGI middleware: no framing, no foreign scripts or media, nothing cached."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()
                    if name.lower().encode() not in present]
            await send(message)

        await self.app(scope, receive, with_headers)


def _ranged(request: Request, data: bytes, media_type: str) -> Response:
    """The bytes, or the part a video element asks for (it seeks with Range requests)."""
    headers = {"Accept-Ranges": "bytes"}
    wanted = request.headers.get("range", "")
    if wanted.startswith("bytes=") and "," not in wanted:
        start_text, _, end_text = wanted[6:].partition("-")
        try:
            start = int(start_text) if start_text else max(0, len(data) - int(end_text))
            end = min(int(end_text), len(data) - 1) if start_text and end_text else len(data) - 1
        except ValueError:
            start, end = -1, -1
        if 0 <= start <= end:
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return Response(data[start:end + 1], status_code=206, media_type=media_type, headers=headers)
        return Response(status_code=416, headers={"Content-Range": f"bytes */{len(data)}"})
    return Response(data, media_type=media_type, headers=headers)
