"""Benchmark: how fast the registries worker applies a burst of state records (the live feed agents).

    python bench/state_feeds.py [--records 2500] [--feed accounts|consents]

A registries worker (`trustreel worker --state-feeds-only`) on the local broker and a SQLite audit
database; once it is up, --records account records (one new account each) or cameo registrations (one
new cameo each, through the consents feed's enrollment step and registry) are produced at once and the
clock runs until the registry holds them all. Run twice in the same process, with the feed batches as
configured and with batches of one record (one Kafka transaction per record, as before #19).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.audit.db import AccountRow, CameoRow, make_engine, make_sessionmaker, upgrade  # noqa: E402
from pipeline.broker import LocalBroker  # noqa: E402
from pipeline.producer import PipelineProducer  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.transport.topics import ensure_topics  # noqa: E402
from schemas.models import AccountEvent, ConsentEvent  # noqa: E402


def rows_like(sessions, key, prefix: str) -> int:
    """How many rows of `key`'s table have a key starting with `prefix`."""
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(key.class_).where(key.startswith(prefix)))


def send_accounts(producer: PipelineProducer, prefix: str, count: int) -> None:
    producer.send_account_events([AccountEvent(event_id=f"{prefix}{index:06d}", account_id=f"{prefix}{index:06d}",
                                               kind="profile", birth_date=date(1990, 1, 1),
                                               assurance="verified_document") for index in range(count)])


def send_registrations(producer: PipelineProducer, prefix: str, count: int) -> None:
    producer.send_consents([ConsentEvent(event_id=f"{prefix}{index:06d}", cameo_id=f"{prefix}{index:06d}",
                                         kind="register", owner_account=f"owner-{index}", audience="everyone")
                            for index in range(count)])


FEEDS = {"accounts": (send_accounts, AccountRow.account_id), "consents": (send_registrations, CameoRow.cameo_id)}


def wait_for(key, sessions, prefix: str, count: int, timeout: float) -> float:
    start = time.perf_counter()
    while rows_like(sessions, key, prefix) < count:
        if time.perf_counter() - start > timeout:
            raise SystemExit(f"the registry held {rows_like(sessions, key, prefix)} of {count} after {timeout}s")
        time.sleep(0.2)
    return time.perf_counter() - start


def run(bootstrap: str, workdir: Path, label: str, records: int, batch_size: int, feed: str) -> float:
    settings = Settings(bootstrap=bootstrap, db_url=f"sqlite:///{workdir / label}.db",
                        topic_prefix=f"feedbench{uuid.uuid4().hex[:6]}.", asset_dir=workdir / "assets")
    ensure_topics(settings)
    upgrade(settings.db_url)
    env = os.environ | {"TRUSTREEL_BOOTSTRAP": bootstrap, "TRUSTREEL_DB_URL": settings.db_url,
                        "TRUSTREEL_TOPIC_PREFIX": settings.topic_prefix, "TRUSTREEL_ASSET_DIR": str(settings.asset_dir),
                        "TRUSTREEL_STAGE_BATCH_SIZE": str(batch_size)}
    sessions = make_sessionmaker(make_engine(settings.db_url))
    with open(workdir / f"{label}.log", "wb") as log, PipelineProducer(settings) as producer:
        worker = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker", "--state-feeds-only"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        send, key = FEEDS[feed]
        try:
            send(producer, "warm-", 3)
            wait_for(key, sessions, "warm-", 3, timeout=180)  # the worker has joined and applies live
            start = time.perf_counter()
            send(producer, "burst-", records)
            wait_for(key, sessions, "burst-", records, timeout=900)
            return time.perf_counter() - start
        finally:
            worker.terminate()
            worker.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2500)
    parser.add_argument("--port", type=int, default=19293, help="local broker port for the benchmark")
    parser.add_argument("--feed", choices=sorted(FEEDS), default="accounts")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="trustreel-bench-feeds-"))
    broker = LocalBroker(home=Settings().broker_home, port=args.port)
    started_here = broker.running_pid() is None
    bootstrap = broker.start()
    try:
        configured = Settings().stage_batch_size
        print(f"{args.records} {args.feed} records at once to a registries worker, SQLite; logs in {workdir}")
        one = run(bootstrap, workdir, "batch1", args.records, 1, args.feed)
        print(f"  one record per transaction (before): {one:6.1f} s, {args.records / one:7.1f} records/s", flush=True)
        batched = run(bootstrap, workdir, "batched", args.records, configured, args.feed)
        print(f"  batches of up to {configured}:          {batched:6.1f} s, {args.records / batched:7.1f} records/s")
        print(f"  {one / batched:.1f}x faster")
    finally:
        if started_here:
            broker.stop()


if __name__ == "__main__":
    main()
