"""The OpenSearch client: SigV4-signed for an Amazon OpenSearch Service domain, unsigned for a
local server. Offline: the signed requests go to a local HTTP server that records them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from opensearchpy import AWSV4SignerAuth, RequestsHttpConnection, Urllib3HttpConnection

from context_engine.search.opensearch import OpenSearchBackend, build_client

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
DOMAIN = "https://vpc-contextengine-search-abcdefghijklmnop.eu-west-1.es.amazonaws.com"


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Static credentials (as Lambda provides the role's), no profile or metadata lookups."""
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-of-the-function-role")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class Recorder(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append(  # type: ignore[attr-defined]
            {"method": self.command, "path": self.path, "headers": dict(self.headers.items()), "body": body})
        payload = json.dumps({"responses": [{"hits": {"total": {"value": 0}, "hits": []}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def connection(client: Any) -> Any:
    return client.transport.get_connection()


def test_a_domain_endpoint_is_signed_for_its_region_and_service(aws_credentials: None) -> None:
    client = build_client(DOMAIN)
    conn = connection(client)
    assert isinstance(conn, RequestsHttpConnection)
    assert isinstance(conn.session.auth, AWSV4SignerAuth)
    signed = conn.session.auth(requests.Request("GET", DOMAIN + "/_cluster/health").prepare())
    # the credential scope: the region from the host (not AWS_REGION), service es
    assert f"Credential={ACCESS_KEY}/" in signed.headers["Authorization"]
    assert "/eu-west-1/es/aws4_request" in signed.headers["Authorization"]
    assert conn.host == DOMAIN + ":443" and conn.use_ssl


def test_a_local_server_is_not_signed(aws_credentials: None, recorder: Any) -> None:
    url, seen = recorder
    client = build_client(url)
    assert isinstance(connection(client), Urllib3HttpConnection)
    client.info()
    assert "Authorization" not in seen[0]["headers"]


def test_signed_requests_carry_a_sigv4_authorization(aws_credentials: None, recorder: Any) -> None:
    url, seen = recorder
    backend = OpenSearchBackend.from_url(url, prefix="t", sign=True)
    backend.client.msearch(body='{"index": "t-turns"}\n{"size": 0}\n')
    backend.client.indices.exists(index="t-turns")
    assert [r["method"] for r in seen] == ["POST", "HEAD"]
    for request in seen:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        auth = headers["authorization"]
        assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/"), auth
        assert "/us-east-1/es/aws4_request" in auth  # no AWS host: the region from AWS_REGION
        assert "SignedHeaders=" in auth and "Signature=" in auth
        assert headers["x-amz-security-token"] == "session-token-of-the-function-role"
        assert "x-amz-date" in headers
    # the payload hash is signed too: a body changed in transit would not verify
    assert "x-amz-content-sha256" in {k.lower() for k in seen[0]["headers"]}


def test_no_credentials_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    with pytest.raises(RuntimeError, match="no AWS credentials"):
        build_client(DOMAIN)
