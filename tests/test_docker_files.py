"""docker/ checked statically (no container engine here): compose and Dockerfiles agree with the code."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import typer
import yaml

from pipeline.cli import app
from pipeline.settings import Settings
from pipeline.worker.catalog import BUILDERS

DOCKER = Path(__file__).resolve().parents[1] / "docker"
SETTINGS_VARIABLES = {f"TRUSTREEL_{name.upper()}" for name in Settings.model_fields}


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def trustreel_services() -> dict[str, dict]:
    return {name: service for name, service in compose()["services"].items()
            if str(service.get("image", "")).startswith("trustreel:")}


def dockerfile(name: str) -> list[tuple[str, str]]:
    """(instruction, arguments) pairs with continuation lines joined and comments dropped."""
    instructions, current = [], ""
    for line in (DOCKER / name).read_text().splitlines():
        if line.strip().startswith("#") and not current:
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            if current.strip():
                keyword, _, rest = current.strip().partition(" ")
                instructions.append((keyword.upper(), rest.strip()))
            current = ""
    return instructions


def resolve(arguments: list[str]):
    """Parse a trustreel command line the way the CLI would, without running it."""
    command = typer.main.get_command(app)  # typer ships its own click: duck-type groups
    context = command.make_context("trustreel", list(arguments), resilient_parsing=False)
    while hasattr(command, "get_command"):
        remaining = [*getattr(context, "_protected_args", []), *context.args]
        if not remaining and getattr(command, "invoke_without_command", False):
            break  # a group that runs on its own (`trustreel console` serves the console)
        assert remaining, f"{arguments} names a command group, not a command"
        name, *rest = remaining
        sub = command.get_command(context, name)
        assert sub is not None, f"trustreel has no command {name!r} (from {arguments})"
        command, context = sub, sub.make_context(name, rest, parent=context)
    return context


def environment_of(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(entry.split("=", 1) for entry in environment)
    return {str(key): str(value) for key, value in environment.items()}


def test_compose_services_run_real_cli_commands_with_known_stages() -> None:
    services = trustreel_services()
    assert {"migrate", "topics", "consent", "likeness", "age", "generate", "likeness-post", "provenance",
            "publish"} <= set(services)
    for name, service in services.items():
        context = resolve(service["command"])
        stages = context.params.get("stage") or []
        assert all(stage in BUILDERS for stage in stages), f"{name}: unknown stage in {stages}"
        if service["command"][0] == "worker":
            assert stages or context.params["state_feeds_only"], \
                f"{name}: every worker service runs named stages (or the state feeds), so each scales on its own"


def test_every_stage_of_the_configured_order_has_a_worker_service() -> None:
    services = trustreel_services()
    stage_order = Settings(stages=environment_of(services["consent"])["TRUSTREEL_STAGES"]).stages
    served = {stage for service in services.values() if service["command"][0] == "worker"
              for stage in resolve(service["command"]).params["stage"]}
    assert served == set(stage_order)


def test_environment_variables_are_ones_the_settings_read() -> None:
    for name, service in trustreel_services().items():
        environment = environment_of(service)
        unknown = {key for key in environment if key.startswith("TRUSTREEL_")} - SETTINGS_VARIABLES
        assert not unknown, f"{name}: settings never read {sorted(unknown)}"
        configured = {key[len("TRUSTREEL_"):].lower(): value for key, value in environment.items()
                      if key.startswith("TRUSTREEL_") and "${" not in value}
        Settings(**configured)  # the values validate too
    for file in ("Dockerfile", "Dockerfile.gpu"):
        for instruction, arguments in dockerfile(file):
            if instruction == "ENV":
                names = {part.split("=", 1)[0] for part in shlex.split(arguments)}
                unknown = {n for n in names if n.startswith("TRUSTREEL_")} - SETTINGS_VARIABLES
                assert not unknown, f"{file}: settings never read {sorted(unknown)}"


def test_dockerfiles_start_the_cli_and_check_health() -> None:
    for file, expected_cmd in (("Dockerfile", ["worker"]), ("Dockerfile.gpu", ["worker", "--stage", "generate"])):
        instructions = dict(dockerfile(file))
        assert instructions["FROM"], file
        assert yaml.safe_load(instructions["ENTRYPOINT"]) == ["trustreel"]
        command = yaml.safe_load(instructions["CMD"])
        assert command == expected_cmd
        resolve(command)
        health = instructions["HEALTHCHECK"]
        resolve(yaml.safe_load(health[health.index("CMD") + 3:].strip())[1:])
        copied = {arguments.split()[0] for instruction, arguments in dockerfile(file) if instruction == "COPY"}
        assert {"pipeline", "consumers", "policies", "schemas", "migrations", "pyproject.toml"} <= copied
    assert "pytorch/pytorch" in dict(dockerfile("Dockerfile.gpu"))["FROM"] and "cuda" in dict(
        dockerfile("Dockerfile.gpu"))["FROM"]


def test_dependencies_volumes_health_and_the_gpu_profile() -> None:
    document = compose()
    services = document["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert services["postgres"]["image"].startswith("postgres:")
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith(("/", ".", "$")):
                assert source in document["volumes"], f"{name}: undeclared volume {source}"
        health = service.get("healthcheck", {})
        assert health.get("test") or health.get("disable"), f"{name} has no health check"
    workers = {n: s for n, s in trustreel_services().items() if s["command"][0] == "worker"}
    assert all(any(v.startswith("assets:") for v in s["volumes"]) for s in workers.values())
    assert all(s["healthcheck"]["test"][1:] == ["trustreel", "health", "--worker"] for s in workers.values())
    assert services["generate"]["profiles"] == ["gpu"]
    assert services["generate"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert all("profiles" not in s for n, s in workers.items() if n != "generate")
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["consent"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for secret in services["provenance"]["secrets"]:
        source, target = (secret, secret) if isinstance(secret, str) else (secret["source"], secret["target"])
        assert source in document["secrets"]
        assert f"/run/secrets/{target}" in environment_of(services["provenance"]).values()


def test_resolve_rejects_what_the_cli_would_reject() -> None:
    with pytest.raises(AssertionError):
        resolve(["no-such-command"])
    with pytest.raises(Exception, match="No such option"):
        resolve(["worker", "--no-such-option"])


def metric_names_in(text: str) -> set[str]:
    """trustreel_* series an expression reads, as the family names the code registers."""
    import re

    names = set(re.findall(r"\btrustreel_[a-z_]+", text))
    return {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in names}


def test_prometheus_scrapes_every_worker_and_alerts_and_dashboard_read_real_metrics() -> None:
    from prometheus_client import REGISTRY

    import pipeline.observability.metrics  # noqa: F401 (registers the families)

    services = compose()["services"]
    workers = {name for name, service in trustreel_services().items() if service.get("command", [None])[0] == "worker"}
    for name in workers:
        assert environment_of(services[name])["TRUSTREEL_METRICS_PORT"] == "9400", name
    prometheus = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    discovery = prometheus["scrape_configs"][0]["dns_sd_configs"][0]
    assert set(discovery["names"]) == workers and discovery["port"] == 9400
    mounted = {volume.split(":")[0] for name in ("prometheus", "grafana") for volume in services[name]["volumes"]}
    for path in mounted:
        if path.startswith("./"):
            assert (DOCKER / path).exists(), f"compose mounts {path}, which is missing"

    known = {family.name for family in REGISTRY.collect()}
    rules = yaml.safe_load((DOCKER / "prometheus" / "alerts.yml").read_text())["groups"][0]["rules"]
    assert {"TrustreelDeadLettersRising", "TrustreelLagGrowing", "TrustreelNothingPublished",
            "TrustreelRejectionJumpAfterPolicyChange"} <= {rule["alert"] for rule in rules}
    for rule in rules:
        assert metric_names_in(rule["expr"]) <= known, f"{rule['alert']} reads a metric nobody exports"
        assert rule["annotations"]["summary"]

    import json

    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "trustreel.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = set().union(*(metric_names_in(expr) for expr in expressions))
    assert used <= known, f"dashboard reads metrics nobody exports: {used - known}"
    assert {"trustreel_decisions", "trustreel_decision_seconds", "trustreel_end_to_end_seconds",
            "trustreel_consumer_lag", "trustreel_dead_letters", "trustreel_gpu_busy_ratio"} <= used
    provider = yaml.safe_load((DOCKER / "grafana" / "provisioning" / "dashboards" / "trustreel.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_kafka_speaks_only_tls_and_every_service_connects_as_its_own_principal() -> None:
    from pipeline.transport import acl_plan

    document = compose()
    services = document["services"]
    kafka = {key: str(value) for key, value in services["kafka"]["environment"].items()}
    assert not any("PLAINTEXT" in value for value in kafka.values())
    listeners = dict(entry.split(":") for entry in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners.values()) <= {"SASL_SSL", "SSL"}
    # the broker is configured as the local secure broker is (one source: acl_plan.secure_listener_properties)
    for line in acl_plan.secure_listener_properties("/run/secrets/kafka_broker_keystore", "/run/secrets/kafka_ca"):
        key, value = line.split("=", 1)
        variable = "KAFKA_" + key.replace("_", "__").replace("-", "___").replace(".", "_").upper()
        assert kafka.get(variable) == value, f"compose's kafka service should set {variable}={value}"
    for secret in services["kafka"]["secrets"]:
        assert secret in document["secrets"]

    settings = Settings(stages=environment_of(services["consent"])["TRUSTREEL_STAGES"])
    principals_used = set()
    for name, service in trustreel_services().items():
        environment = environment_of(service)
        protocol = environment["TRUSTREEL_KAFKA_SECURITY_PROTOCOL"]
        assert protocol in ("SASL_SSL", "SSL"), f"{name} connects with {protocol}"
        mounted = {secret if isinstance(secret, str) else secret["target"]: secret
                   for secret in service.get("secrets", [])}
        assert "kafka_ca" in mounted and environment["TRUSTREEL_KAFKA_CA_FILE"] == "/run/secrets/kafka_ca"
        if protocol == "SSL":  # the admin jobs: the admin certificate on the broker's mutual-TLS listener
            assert environment["TRUSTREEL_KAFKA_CERT_FILE"] == "/run/secrets/kafka_admin_keystore", name
            assert service["command"][0] != "worker", f"{name}: a worker must not run as the admin"
            continue
        user = environment["TRUSTREEL_KAFKA_USERNAME"]
        source = mounted["kafka_password"]["source"]
        assert source == f"kafka_password_{user.replace('-', '_')}", f"{name} mounts another principal's password"
        assert document["secrets"][source]["file"].endswith(f"/{user}.password")
        principals_used.add(user)
        if service["command"][0] == "console":
            assert user == acl_plan.REVIEWER, f"{name}: the console resumes reviews as the reviewer principal"
            continue
        context = resolve(service["command"])
        expected = ([acl_plan.stage_principal(stage) for stage in context.params["stage"]]
                    or [acl_plan.REGISTRIES])
        assert [user] == expected, f"{name} runs as {user}, not as {expected}"
        assert context.params["state_feeds"] is False or context.params["state_feeds_only"], \
            f"{name}: a stage's principal may not apply the state feeds (--no-state-feeds)"
    assert principals_used == ({acl_plan.stage_principal(stage) for stage in settings.stages}
                               | {acl_plan.REGISTRIES, acl_plan.REVIEWER})
