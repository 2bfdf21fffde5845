"""The shared cross-language scenarios (tests/scenarios/*.json) through the Python binding,
and the runner's self-check: every scenario of tests/scenarios/wrong/ is wrong in one way and
must fail at the step and with the reason tests/scenarios/wrong/failures.json gives, so a
passing suite is never a vacuous one."""

import json
import os

import pytest

from conftest import REPO
from scenarios import run_scenario

DIR = REPO / "tests" / "scenarios"
FILES = sorted(p for p in DIR.glob("*.json") if p.name != "schema.json")
ONLY = [s for s in os.environ.get("FELIX_SCENARIOS", "").split(",") if s]
WRONG_DIR = DIR / "wrong"
WRONG = sorted(p for p in WRONG_DIR.glob("*.json") if p.name != "failures.json")
FAILURES = json.loads((WRONG_DIR / "failures.json").read_text())["failures"]


def test_scenarios_exist():
    assert FILES, f"no scenario in {DIR}"
    missing = set(ONLY) - {p.stem for p in FILES}
    assert not missing, f"unknown scenarios {missing}"


def jwt_broker_of(request):
    """The JWT-mode broker of the auth scenarios, started on first use (one per session)."""

    def get():
        b = request.getfixturevalue("jwt_broker")
        return b.address, b.ca_file

    return get


@pytest.mark.parametrize("path", [p for p in FILES if not ONLY or p.stem in ONLY], ids=lambda p: p.stem)
def test_scenario(broker, path, request):
    sc = json.loads(path.read_text())
    failure = run_scenario(
        sc, broker.address, broker.ca_file, FILES.index(path), stem=path.stem, jwt_broker=jwt_broker_of(request)
    )
    assert failure is None, f"{path.stem}: step {failure[0]} ({failure[1]}): {failure[2]}"


def test_every_wrong_scenario_has_an_expected_failure():
    assert WRONG, f"no wrong scenario in {WRONG_DIR}"
    assert {p.stem for p in WRONG} == set(FAILURES), "wrong/*.json and failures.json differ"


@pytest.mark.parametrize("path", WRONG, ids=lambda p: p.stem)
def test_runner_fails_wrong_scenario(broker, path, request):
    want = FAILURES[path.stem]
    failure = run_scenario(
        json.loads(path.read_text()), broker.address, broker.ca_file, 1000, stem=path.stem,
        jwt_broker=jwt_broker_of(request),
    )  # fmt: skip
    assert failure is not None, f"{path.stem} passed; expected a failure: {want}"
    step, op, reason = failure
    want_step = -1 if want["step"] is None else want["step"]
    assert step == want_step and want["reason"] in reason, f"expected {want}, got step {step} ({op}): {reason}"


def test_runner_passes_a_correct_scenario(broker):
    sc = {
        "name": "correct",
        "description": "d",
        "steps": [
            {"op": "connect"},
            {"op": "subscribe", "as": "s", "namespace": "${ns}", "stream": "x"},
            {"op": "publish", "stream": "x", "payload": {"b64": "AP8="}},
            {"op": "expect_events", "subscription": "s", "events": [{"payload": {"b64": "AP8="}, "stream": "x", "offset": 0}]},
            {"op": "publish", "stream": "x", "payload": {"repeat": "ab", "count": 1000}},
            {"op": "expect_events", "subscription": "s", "payloads": ["ab" * 1000]},
        ],
    }
    assert run_scenario(sc, broker.address, broker.ca_file, 3000, stem="correct") is None
