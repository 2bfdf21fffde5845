"""Every script in examples/python/ runs against the test broker. Each one checks what it
receives and exits non-zero with a message saying what was wrong or missing; it ends with the
line "ok" only when everything it showed behaved as shown."""

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
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=90)
    out = f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert r.returncode == 0, out
    assert r.stdout.splitlines()[-1:] == ["ok"], out
