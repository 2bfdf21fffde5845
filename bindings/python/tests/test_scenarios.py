"""The shared cross-language scenarios (tests/scenarios/*.json) through the Python binding,
plus a self-test showing the runner does fail on wrong expectations."""

import json
import os

import pytest

from conftest import REPO
from scenarios import run_scenario

DIR = REPO / "tests" / "scenarios"
FILES = sorted(p for p in DIR.glob("*.json") if p.name != "schema.json")
ONLY = [s for s in os.environ.get("FELIX_SCENARIOS", "").split(",") if s]


def test_scenarios_exist():
    assert FILES, f"no scenario in {DIR}"
    missing = set(ONLY) - {p.stem for p in FILES}
    assert not missing, f"unknown scenarios {missing}"


@pytest.mark.parametrize("path", [p for p in FILES if not ONLY or p.stem in ONLY], ids=lambda p: p.stem)
def test_scenario(broker, path):
    sc = json.loads(path.read_text())
    assert sc["name"] == path.stem
    failure = run_scenario(sc, broker.address, broker.ca_file, FILES.index(path))
    assert failure is None, f"{path.stem}: step {failure[0]} ({failure[1]}): {failure[2]}"


def _base():
    return {
        "name": "self_test",
        "description": "x",
        "steps": [
            {"op": "connect"},
            {"op": "subscribe", "as": "s", "stream": "t"},
            {"op": "publish", "stream": "t", "payloads": ["1", "2"]},
            {"op": "expect_events", "subscription": "s", "payloads": ["1", "2"]},
            {"op": "cache_put", "cache": "c", "key": "k", "value": "v"},
            {"op": "cache_get", "cache": "c", "key": "k", "expect": "v"},
        ],
    }


@pytest.mark.parametrize(
    "mutate, step",
    [
        (lambda s: None, None),
        (lambda s: s["steps"][3].update(payloads=["2", "1"]), 3),
        (lambda s: s["steps"][5].update(expect="w"), 5),
        (lambda s: s["steps"][4].update(expect_error={"code": "conflict"}), 4),
        (lambda s: s["steps"][2].update(stream="bad name"), 2),
        (lambda s: s["steps"][1].update(typo=1), -1),
        (lambda s: s["steps"][3].update(subscription="nope"), 3),
    ],
)
def test_runner_reports_failures(broker, mutate, step):
    sc = _base()
    mutate(sc)
    failure = run_scenario(sc, broker.address, broker.ca_file)
    if step is None:
        assert failure is None, failure
    else:
        assert failure is not None and failure[0] == step, failure
