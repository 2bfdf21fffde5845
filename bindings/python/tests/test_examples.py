"""Every script in examples/python/ runs against the test broker."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

EXAMPLES = sorted((REPO / "examples" / "python").glob("*.py"))


def test_examples_exist():
    assert EXAMPLES


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(broker, script: Path):
    env = dict(os.environ, FELIX_ADDRESS=broker.address, FELIX_CA_FILE=broker.ca_file)
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
