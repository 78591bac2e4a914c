"""The README's main command: `trustreel demo` runs the whole job and every sample ends as expected."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from pipeline.settings import DEFAULT_STAGES, Settings
from tests.conftest import settings_env

pytestmark = [pytest.mark.broker, pytest.mark.stages(*DEFAULT_STAGES)]


def test_demo_runs_every_sample_to_its_expected_outcome(settings: Settings, tmp_path) -> None:
    # As a user runs it: packaged policies, and the demo builds its own tiny model in its directory.
    environment = {name: value for name, value in settings_env(settings).items()
                   if name not in ("TRUSTREEL_POLICY_DIR", "TRUSTREEL_GENERATOR_MODEL")}
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "demo"], cwd=tmp_path,
                            env=os.environ | environment, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    noise = [line for line in (result.stdout + result.stderr).splitlines()
             if re.search(r"\b(ERROR|WARNING|CRITICAL)\b|Warning:|Traceback|\x1b\[|it/s\]", line)]
    assert noise == [], "a successful demo prints no error, warning, traceback, escape code or progress bar"
    assert "20 of 20 requests ended as expected" in result.stdout
    assert result.stdout.count("outcome: rejected at likeness") == 3
    assert result.stdout.count("outcome: published") == 5
    assert result.stdout.count("outcome: rejected at consent") == 4
    assert result.stdout.count("outcome: rejected at age") == 2
    assert result.stdout.count("outcome: rejected at content") == 1
    assert result.stdout.count("outcome: rejected at known-media") == 1
    assert result.stdout.count("outcome: rejected at generate") == 1
    assert "tiny randomly initialised model" in result.stdout
    assert result.stdout.count("outcome: dead letter") == 3
    assert "unsupported_schema_version: schema_version 99 is not supported" in result.stdout


def test_the_demo_runs_on_a_secure_broker_with_a_principal_per_stage(tmp_path) -> None:
    """`trustreel demo --secure`: SASL_SSL with ACLs, each stage, the state feeds and each sample service as
    its own principal, and still every sample ends as expected.

    Twelve worker processes start at once on this 2-core machine, and faust rightly reports when one's
    event loop was starved for CPU ("Thread keepalive is not responding"); so this test does not ask for a
    quiet output (the plaintext demo above does), only for no traceback."""
    from pipeline.broker import LocalBroker
    from pipeline.demo import SECURE_PORT_OFFSET
    from tests.conftest import TEST_BROKER_PORT

    port = TEST_BROKER_PORT + 200  # its secure broker: this port + SECURE_PORT_OFFSET, apart from the others
    environment = {"TRUSTREEL_BROKER_PORT": str(port), "TRUSTREEL_BOOTSTRAP": f"127.0.0.1:{port}"}
    clean = {name: value for name, value in os.environ.items() if not name.startswith("TRUSTREEL_")}
    try:
        result = subprocess.run([sys.executable, "-m", "pipeline.cli", "demo", "--secure"], cwd=tmp_path,
                                env=clean | environment, capture_output=True, text=True, timeout=400)
    finally:
        LocalBroker(home=Settings().broker_home, port=port + SECURE_PORT_OFFSET, secure=True).wipe()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "(SASL_SSL, SCRAM-SHA-512, ACLs)" in result.stdout and "each as its own principal" in result.stdout
    assert "20 of 20 requests ended as expected" in result.stdout
    assert result.stdout.count("outcome: published") == 5
