"""Fixtures: a real felix-broker process per test session (and extra ones on demand).

The binary comes from FELIX_BROKER_BIN, default <repo>/target/debug/felix-broker. Each broker
listens on a free loopback port, in dev mode, writing its CA under a temporary directory; a
restart reuses the port and the CA directory (the dev broker keeps its certificate there).
"""

from __future__ import annotations

import faulthandler
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

import felix

REPO = Path(__file__).resolve().parents[3]
BROKER_BIN = Path(os.environ.get("FELIX_BROKER_BIN", REPO / "target" / "debug" / "felix-broker"))


def free_port() -> int:
    # QUIC is UDP: the port must be free for UDP.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout: float, what: str, interval: float = 0.02):
    """Polls `cond` until it returns a truthy value (returned) or fails at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# Every broker process this session started, for a test that must end the run abruptly.
LIVE_BROKERS: "set[Broker]" = set()


class Broker:
    """One broker process; `restart()` keeps its address and CA."""

    def __init__(self, extra_args: Optional[List[str]] = None) -> None:
        if not BROKER_BIN.exists():
            raise RuntimeError(f"{BROKER_BIN} not found: cargo build -p felix-broker")
        self.dir = Path(tempfile.mkdtemp(prefix="felix-py-"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.ca_file = str(self.dir / "ca.pem")
        self.extra = extra_args or []
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        log = open(self.dir / "broker.log", "ab")
        self.proc = subprocess.Popen(
            [str(BROKER_BIN), "--listen", self.address, "--no-metrics",
             "--dev-ca-path", self.ca_file, *self.extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        LIVE_BROKERS.add(self)
        wait_until(self._ready, 30, f"broker at {self.address}", 0.05)

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"broker exited: {(self.dir / 'broker.log').read_text()}")
        if not os.path.exists(self.ca_file):
            return False
        try:
            with felix.Client(self.address, ca_file=self.ca_file, connect_timeout=1.0) as c:
                c.ping()
            return True
        except felix.AuthError:
            return True  # it answered: it only wants a token
        except felix.FelixError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        LIVE_BROKERS.discard(self)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, **kw) -> felix.Client:
        return felix.Client(self.address, ca_file=self.ca_file, **kw)

    async def aclient(self, **kw) -> felix.AsyncClient:
        return await felix.AsyncClient.connect(self.address, ca_file=self.ca_file, **kw)


# A test that hangs fails the run, with every thread's stack, instead of holding CI until its
# own limit.
TEST_DEADLINE_S = float(os.environ.get("FELIX_TEST_DEADLINE_S", "120"))


@pytest.fixture(autouse=True)
def _deadline(request: pytest.FixtureRequest) -> Iterator[None]:
    def expire() -> None:
        capman = request.config.pluginmanager.getplugin("capturemanager")
        with capman.global_and_fixture_disabled():
            sys.stderr.write(f"\n{request.node.nodeid}: still running after {TEST_DEADLINE_S}s\n")
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            sys.stderr.flush()
        for b in list(LIVE_BROKERS):  # os._exit runs no fixture teardown
            b.kill()
        os._exit(3)

    timer = threading.Timer(TEST_DEADLINE_S, expire)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    b = Broker()
    yield b
    b.stop()


# The JWT fixture of the auth scenarios (tests/scenarios/auth/, README "Brokers").
AUTH_FIXTURE = REPO / "tests" / "scenarios" / "auth"
# The fixture tokens live until 2100 (tests/scenarios/auth/principals.json).
JWT_ARGS = [
    "--jwt-keys-file", str(AUTH_FIXTURE / "jwks.json"), "--auth-issuer", "felix-scenarios",
    "--auth-max-token-lifetime-s", "4000000000",
]


@pytest.fixture(scope="session")
def jwt_broker() -> Iterator[Broker]:
    """A dev-mode broker in JWT mode with the scenario fixture's key: tokens of
    tests/scenarios/auth/tokens.json are accepted with their perms, anything else refused."""
    b = Broker(JWT_ARGS)
    yield b
    b.stop()


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    """A broker of this test alone (for restarts)."""
    b = Broker()
    yield b
    b.stop()


@pytest.fixture
def client(broker: Broker) -> Iterator[felix.Client]:
    with broker.client() as c:
        yield c


@pytest.fixture
async def aclient(broker: Broker):
    c = await broker.aclient()
    yield c
    await c.close()


@pytest.fixture
def ns() -> str:
    """A fresh namespace per test, so tests never see each other's data."""
    return "py_" + uuid.uuid4().hex[:12]
