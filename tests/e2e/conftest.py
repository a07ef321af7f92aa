"""The local server over HTTP: `context-engine serve` in a subprocess with its own data dir."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


DEV_KEY = "ce_" + "e2eDevKey0123456789abcdefghijklmnopqrstu"[:40]
CLI = str(Path(sys.executable).with_name("context-engine"))


@dataclass
class Server:
    url: str
    data_dir: Path
    key: str

    def call(self, method: str, path: str, body: Any = None, *, key: str | None = "default",
             headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        token = self.key if key == "default" else key
        if token:
            req.add_header("authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                payload = resp.read()
                headers = {k.lower(): v for k, v in resp.headers.items()}
                return resp.status, headers, json.loads(payload) if payload else None
        except urllib.error.HTTPError as err:
            payload = err.read()
            return err.code, {k.lower(): v for k, v in err.headers.items()}, json.loads(payload) if payload else None

    def create_key(self, tenant: str, role: str, agent: str | None = None) -> str:
        cmd = [CLI, "keys", "create", "--tenant", tenant, "--role", role, "--data-dir", str(self.data_dir)]
        if agent:
            cmd += ["--agent", agent]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout
        match = re.search(r"^key: (\S+)$", out, re.M)
        assert match, out
        return match.group(1)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("e2e-data")
    port = free_port()
    env = {**os.environ, "CONTEXT_ENGINE_DEV_KEY": DEV_KEY, "CONTEXT_ENGINE_EMBEDDER": "hashing"}
    log = open(data_dir / "serve.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([CLI, "serve", "--port", str(port), "--data-dir", str(data_dir)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    srv = Server(f"http://127.0.0.1:{port}", data_dir, DEV_KEY)
    deadline = time.monotonic() + 90
    while True:
        try:
            if srv.call("GET", "/v1/health", key=None)[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.close()
            pytest.fail("server did not start:\n" + (data_dir / "serve.log").read_text()[-3000:])
        time.sleep(0.2)
    yield srv
    proc.terminate()
    proc.wait(15)
    log.close()
    from context_engine.db.embedded import start_embedded, stop_embedded

    start_embedded(data_dir)  # attach to the server's postgres, then stop it
    stop_embedded(data_dir)
