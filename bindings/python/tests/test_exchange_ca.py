"""`token_exchange_ca_file` (sync and asyncio): the token exchange reaches a control plane served
over real TLS with a private CA (a local HTTPS endpoint with a certificate made here by
openssl) only when that CA is given; without it the certificate is refused and nothing is
sent. The broker is the dev one (any token accepted): what is checked is the exchange."""

import http.server
import json
import shutil
import ssl
import subprocess
import threading
import urllib.parse
from pathlib import Path

import pytest

import felix

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def make_ca_and_cert(d: Path) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=felix-test-cp-ca", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    run("req", *ec, "-keyout", "cp.key", "-out", "cp.csr", "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", "cp.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "cp.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip


class ControlPlane:
    """An HTTPS endpoint answering the RFC 8693 exchange with a fixed Felix token."""

    def __init__(self, d: Path) -> None:
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("content-length", "0"))
                outer.requests.append((self.path, urllib.parse.parse_qs(self.rfile.read(n).decode())))
                body = json.dumps({"access_token": "felix-token", "token_type": "Bearer",
                                   "expires_in": 600}).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(d / "cp.pem", d / "cp.key")
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://localhost:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cp(tmp_path):
    make_ca_and_cert(tmp_path)
    c = ControlPlane(tmp_path)
    c.ca = str(tmp_path / "ca.pem")
    yield c
    c.stop()


def test_exchange_over_tls_with_a_private_ca(broker, cp, ns):
    with broker.client(tenant="acme", token_exchange_url=cp.url, subject_token="oidc-id-token",
                       token_exchange_ca_file=cp.ca) as c:  # fmt: skip
        c.cache_put(ns, "c", "k", b"v")
        assert c.cache_get(ns, "c", "k").value == b"v"
    assert len(cp.requests) == 1
    path, form = cp.requests[0]
    assert path == "/oauth/token"
    assert form["subject_token"] == ["oidc-id-token"]
    assert form["audience"] == ["acme"]
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:token-exchange"]


def test_without_the_ca_the_control_plane_certificate_is_refused(broker, cp):
    with pytest.raises(felix.FelixError, match="control plane") as e:
        broker.client(token_exchange_url=cp.url, subject_token="oidc-id-token", connect_timeout=5.0)
    assert e.value.code == "unavailable", e.value
    assert cp.requests == [], "a request went out over an unverified connection"


def test_a_missing_ca_file_or_one_without_url_is_invalid(broker, tmp_path):
    with pytest.raises(felix.InvalidArgumentError, match="token_exchange_ca_file need"):
        broker.client(token_exchange_ca_file=str(tmp_path / "ca.pem"))
    with pytest.raises(felix.InvalidArgumentError, match="no-such-ca.pem"):
        broker.client(token_exchange_url="https://localhost:1", subject_token="t",
                      token_exchange_ca_file=str(tmp_path / "no-such-ca.pem"))  # fmt: skip


async def test_async_exchange_over_tls_with_a_private_ca(broker, cp, ns):
    c = await broker.aclient(token_exchange_url=cp.url, subject_token="oidc-id-token",
                             token_exchange_ca_file=cp.ca)  # fmt: skip
    try:
        await c.cache_put(ns, "c", "k", b"v")
        assert (await c.cache_get(ns, "c", "k")).value == b"v"
    finally:
        await c.close()
    assert len(cp.requests) == 1
