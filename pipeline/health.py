"""Readiness checks for deployments: can this process reach what a worker needs?

    trustreel health  ->  broker answers and has the pipeline's topics
                          audit database answers and is at the newest migration
                          asset store answers (one fixed probe object)
    trustreel health --worker: also this machine's worker's /healthz (it holds input partitions, and
                          they move when records wait), on TRUSTREEL_METRICS_PORT
    exit 0 when all hold; otherwise 1, one line per failed check (container health checks use this)
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.settings import Settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_broker(settings: Settings) -> Check:
    from kafka.admin import KafkaAdminClient

    from pipeline.transport.security import KafkaConnection
    from pipeline.transport.topics import TopicMap

    try:
        connection = KafkaConnection.from_settings(settings)
    except ValueError as exc:  # an unreadable password file: names the setting, never the secret
        return Check("broker", False, str(exc))
    where = f"{settings.bootstrap} as {connection.principal} ({connection.protocol})"
    try:
        admin = KafkaAdminClient(**connection.client_options(), client_id="trustreel-health", request_timeout_ms=5000)
        try:
            existing = set(admin.list_topics())
        finally:
            admin.close()
    except Exception as exc:  # any client error means "not ready"; refused credentials look like no answer
        return Check("broker", False, f"{where}: {type(exc).__name__}: {exc}")
    missing = sorted(spec.name for spec in TopicMap.from_settings(settings).all_topics(settings)
                     if spec.name not in existing)
    if missing:  # under ACLs a principal lists only the topics it may describe
        return Check("broker", False, f"topics missing or not visible to {connection.principal}: "
                                      f"{', '.join(missing)} (run `trustreel topics create`; under ACLs, "
                                      "apply `trustreel security acl-plan`)")
    return Check("broker", True, where)


def check_database(settings: Settings) -> Check:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from pipeline.audit.db import alembic_config, make_engine

    try:
        engine = make_engine(settings.db_url)
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
        engine.dispose()
    except Exception as exc:
        return Check("database", False, f"{type(exc).__name__}: {exc}")
    head = ScriptDirectory.from_config(alembic_config(settings.db_url)).get_current_head()
    if current != head:
        return Check("database", False, f"at migration {current}, newest is {head} (run `trustreel db upgrade`)")
    return Check("database", True, f"migration {current}")


def check_assets(settings: Settings) -> Check:
    from pipeline.media.assets import asset_store

    try:
        store = asset_store(settings.asset_dir, settings.asset_url)
        store.get(store.put(b"trustreel health probe", "text/plain"))  # same bytes each time: one object
    except Exception as exc:
        return Check("assets", False, f"{type(exc).__name__}: {exc}")
    return Check("assets", True, settings.asset_url or str(settings.asset_dir))


def check_worker(settings: Settings) -> Check:
    """This machine's worker, asked on its metrics port: holds partitions, and they move when records wait."""
    import urllib.error
    import urllib.request

    if settings.metrics_port is None:
        return Check("worker", True, "not checked (TRUSTREEL_METRICS_PORT is not set)")
    url = f"http://127.0.0.1:{settings.metrics_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return Check("worker", True, answer.read().decode().strip())
    except urllib.error.HTTPError as problem:
        return Check("worker", False, problem.read().decode().strip().replace("\n", "; "))
    except OSError as problem:
        return Check("worker", False, f"{url}: {problem}")


def run_checks(settings: Settings, worker: bool = False) -> list[Check]:
    checks = [check_broker(settings), check_database(settings), check_assets(settings)]
    return checks + [check_worker(settings)] if worker else checks
