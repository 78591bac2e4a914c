"""The README's main command: `trustreel demo` runs the whole job and every sample ends as expected."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.settings import Settings
from tests.conftest import settings_env

pytestmark = pytest.mark.broker


def test_demo_runs_every_sample_to_its_expected_outcome(settings: Settings, tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "demo"], cwd=tmp_path,
                            env=os.environ | settings_env(settings), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "14 of 14 requests ended as expected" in result.stdout
    assert result.stdout.count("outcome: rejected at likeness") == 2
    assert result.stdout.count("outcome: published") == 3
    assert result.stdout.count("outcome: rejected at consent") == 4
    assert result.stdout.count("outcome: rejected at age") == 2
    assert result.stdout.count("outcome: dead letter") == 3
    assert "unsupported_schema_version: schema_version 99 is not supported" in result.stdout
