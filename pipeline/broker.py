"""A single-node Apache Kafka (KRaft) broker on localhost, for the demo and the tests.

    broker start: jars cached? -no-> mvn copy-dependencies (Maven Central)
                  running?     -yes-> reuse
                  storage formatted? -no-> kafka.tools.StorageTool format
                  java kafka.Kafka server.properties (detached) -> wait until it answers
    broker stop:  SIGTERM the recorded pid, wait, SIGKILL if it hangs

    secure (broker start --secure): clients on SASL_SSL (TLS + SCRAM-SHA-512) at the port; the controller
                  (port + 1) and the broker's own listener (port + 2, where the admin connects with its
                  certificate) on mutual TLS; StandardAuthorizer, no access unless an ACL allows it; a throwaway
                  CA, certificates and each principal's password in <node>/secrets (transport.dev_credentials);
                  SCRAM users and the ACL plan are made through the admin listener at start (provision)

Kafka stays on 3.9.x: 4.x removed protocol versions older clients still speak.
Jars live in a cache outside the clone so reruns start in seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pipeline.transport.acl_plan import ADMIN, Grant, provision, secure_listener_properties
from pipeline.transport.dev_credentials import password_file, write_broker_tls
from pipeline.settings import Settings
from pipeline.transport.security import KafkaConnection

KAFKA_VERSION = "3.9.1"
SCRAM = "SCRAM-SHA-512"


class BrokerError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalBroker:
    home: Path
    port: int = 9092
    kafka_version: str = KAFKA_VERSION
    secure: bool = False

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def admin_port(self) -> int:
        """A secure broker's mutual-TLS listener: the broker's own traffic and the admin's certificate."""
        return self.port + 2

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def libs_dir(self) -> Path:
        return self.home / f"libs-{self.kafka_version}"

    @property
    def run_dir(self) -> Path:
        return self.home / f"node-{self.port}"

    @property
    def secrets_dir(self) -> Path:
        return self.run_dir / "secrets"

    def connection(self, principal: str = ADMIN) -> KafkaConnection:
        """How a client reaches this broker as `principal` (ignored on a plaintext broker)."""
        if not self.secure:
            return KafkaConnection(self.bootstrap)
        if principal == ADMIN:
            return KafkaConnection(f"127.0.0.1:{self.admin_port}", protocol="SSL", ca_file=self.secrets_dir / "ca.pem",
                                   cert_file=self.secrets_dir / "admin.pem")
        return KafkaConnection(self.bootstrap, protocol="SASL_SSL", mechanism=SCRAM, username=principal,
                               password=password_file(self.secrets_dir, principal).read_text().strip(),
                               ca_file=self.secrets_dir / "ca.pem")

    def client_environment(self, principal: str) -> dict[str, str]:
        """The TRUSTREEL_KAFKA_* settings of a process that connects as `principal` (no secret inline)."""
        if not self.secure:
            return {"TRUSTREEL_BOOTSTRAP": self.bootstrap, "TRUSTREEL_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
        if principal == ADMIN:
            return {"TRUSTREEL_BOOTSTRAP": f"127.0.0.1:{self.admin_port}", "TRUSTREEL_KAFKA_SECURITY_PROTOCOL": "SSL",
                    "TRUSTREEL_KAFKA_CA_FILE": str(self.secrets_dir / "ca.pem"),
                    "TRUSTREEL_KAFKA_CERT_FILE": str(self.secrets_dir / "admin.pem")}
        return {"TRUSTREEL_BOOTSTRAP": self.bootstrap, "TRUSTREEL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "TRUSTREEL_KAFKA_SASL_MECHANISM": SCRAM, "TRUSTREEL_KAFKA_USERNAME": principal,
                "TRUSTREEL_KAFKA_PASSWORD_FILE": str(password_file(self.secrets_dir, principal)),
                "TRUSTREEL_KAFKA_CA_FILE": str(self.secrets_dir / "ca.pem")}

    def client_settings(self, base: Settings, principal: str) -> Settings:
        """`base` with the connection settings of `principal` (for clients in this process)."""
        connection = {key.removeprefix("TRUSTREEL_").lower(): value
                      for key, value in self.client_environment(principal).items()}
        return Settings(**(base.model_dump(exclude={"kafka_password"}) | connection))

    def provision(self, users: list[str], grants: list[Grant]) -> int:
        """Make a SCRAM user for each principal (keeping existing passwords) and apply the ACLs."""
        from kafka.admin import KafkaAdminClient

        if not self.secure:
            raise BrokerError("principals and ACLs need a broker started with --secure")
        admin = KafkaAdminClient(**self.connection().client_options(), client_id="trustreel-provision")
        try:
            return provision(admin, {user: password_file(self.secrets_dir, user).read_text().strip()
                                     for user in users if user != ADMIN}, grants)
        finally:
            admin.close()

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "broker.log"

    def fetch_jars(self) -> Path:
        """Resolve Kafka from Maven Central once; later calls reuse the cache."""
        marker = self.libs_dir / ".complete"
        if marker.exists():
            return self.libs_dir
        if shutil.which("mvn") is None:
            raise BrokerError("Maven (mvn) is needed once to fetch Kafka from Maven Central")
        self.home.mkdir(parents=True, exist_ok=True)
        pom = self.home / "kafka-broker-pom.xml"
        pom.write_text(resources.files("pipeline").joinpath("kafka-broker-pom.xml").read_text())
        staging = self.libs_dir.with_name(self.libs_dir.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        result = subprocess.run(
            [
                "mvn", "-q", "-B", "-f", str(pom), f"-Dkafka.version={self.kafka_version}",
                "dependency:copy-dependencies", f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
            ],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"mvn could not fetch Kafka {self.kafka_version}:\n{result.stdout}\n{result.stderr}")
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        staging.rename(self.libs_dir)
        marker.touch()
        return self.libs_dir

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and b"kafka.Kafka" not in cmdline.read_bytes():
            return None  # the pid was recycled by something else
        return pid

    def answers(self, timeout: float = 5.0) -> bool:
        """True when the broker serves metadata requests (not just an open port)."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                pass
        except OSError:
            return False
        try:
            admin = KafkaAdminClient(
                **self.connection().client_options(), request_timeout_ms=int(timeout * 1000),
                client_id="trustreel-broker-probe",
            )
        except KafkaError:
            return False
        try:
            admin.list_topics()
            return True
        except KafkaError:
            return False
        finally:
            admin.close()

    def _write_config(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = self.run_dir / "data"
        properties = self.run_dir / "server.properties"
        properties.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            *(self._secure_listeners() if self.secure else self._plaintext_listeners()),
            "controller.listener.names=CONTROLLER",
            f"log.dirs={data}",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=5",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            f"auto.create.topics.enable={'false' if self.secure else 'true'}",
            "num.partitions=3",
            "log.cleaner.backoff.ms=1000",
            "",
        ]))
        (self.run_dir / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        )
        return properties

    def _plaintext_listeners(self) -> list[str]:
        return [f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"]

    def _secure_listeners(self) -> list[str]:
        write_broker_tls(self.secrets_dir)
        return [
            f"listeners=SASL_SSL://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port},"
            f"BROKER://127.0.0.1:{self.admin_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{self.port},BROKER://127.0.0.1:{self.admin_port}",
            *secure_listener_properties(self.secrets_dir / "broker.pem", self.secrets_dir / "ca.pem"),
        ]

    def _java(self, *args: str, heap: str = "256m") -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java is needed to run the local Kafka broker")
        return [
            java, f"-Xmx{heap}", "-cp", f"{self.libs_dir}/*",
            f"-Dlog4j.configuration=file:{self.run_dir / 'log4j.properties'}", *args,
        ]

    def start(self, wait_seconds: float = 90.0) -> str:
        """Start (or reuse) the broker and return its bootstrap address once it answers."""
        if self.running_pid() is not None and self.answers():
            return self.bootstrap
        if self.answers():
            raise BrokerError(f"port {self.port} already serves a Kafka broker this project did not start; "
                              f"use it with --bootstrap-servers {self.bootstrap} or pick another port")
        self.fetch_jars()
        made_secure = (self.run_dir / "secure").exists()
        if (self.run_dir / "data" / "meta.properties").exists() and made_secure != self.secure:
            raise BrokerError(f"the broker's data in {self.run_dir.name} was made "
                              f"{'with' if made_secure else 'without'} --secure; wipe it (`trustreel broker wipe`) "
                              "or use another port")
        properties = self._write_config()
        if self.secure:
            (self.run_dir / "secure").touch()
        if not (self.run_dir / "data" / "meta.properties").exists():
            cluster_id = subprocess.run(
                self._java("kafka.tools.StorageTool", "random-uuid"), capture_output=True, text=True, check=True
            ).stdout.strip().splitlines()[-1]
            formatted = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(properties)),
                capture_output=True, text=True,
            )
            if formatted.returncode != 0:
                raise BrokerError(f"formatting KRaft storage failed:\n{formatted.stdout}\n{formatted.stderr}")
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                self._java("kafka.Kafka", str(properties), heap="768m"),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BrokerError(f"the broker exited with {process.returncode}; see {self.log_file}")
            if self.answers(timeout=2.0):
                return self.bootstrap
            time.sleep(0.5)
        self.stop()
        raise BrokerError(f"the broker did not answer within {wait_seconds:.0f}s; see {self.log_file}")

    def stop(self, wait_seconds: float = 30.0) -> bool:
        """Stop the broker this project started; False when none was running."""
        pid = self.running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            _reap(pid)
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def wipe(self) -> None:
        """Delete this node's data (topics, offsets); the jar cache stays."""
        self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def _reap(pid: int) -> None:
    """Collect the exit status when the broker is our own child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
