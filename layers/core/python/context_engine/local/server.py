"""``context-engine serve``: the local service on the embedded default."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from context_engine.local.gateway import GATEWAY_MAX_PAYLOAD, LocalGateway
from context_engine.models.domain import Role
from context_engine.repos import tenants
from context_engine.runtime import Runtime

log = logging.getLogger(__name__)

DEV_TENANT = "dev"


def bootstrap_dev_tenant(rt: Runtime) -> str | None:
    """First start in a data dir: create the dev tenant and an admin key, and return the key
    (shown once). ``CONTEXT_ENGINE_DEV_KEY`` presets that key (also on later starts)."""
    from context_engine.auth import create_key
    from context_engine.privacy.keys import hash_api_key

    preset = rt.settings.dev_key
    with rt.db.owner() as conn:
        exists = tenants.get_tenant(conn, DEV_TENANT) is not None
        known = preset and conn.execute("select 1 from api_keys where key_hash = %s",
                                        [hash_api_key(preset)]).fetchone()
    if preset and not known:
        create_key(rt.db, DEV_TENANT, Role.admin, name="dev admin", key=preset)
        return preset
    if not exists:
        return create_key(rt.db, DEV_TENANT, Role.admin, name="dev admin")[1]
    return None


def make_server(gateway: LocalGateway, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "context-engine-local"

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > GATEWAY_MAX_PAYLOAD:
                self.send_response(413)
                self.send_header("content-length", "0")
                self.send_header("connection", "close")
                self.end_headers()
                return
            body = self.rfile.read(length) if length else b""
            try:
                resp = gateway.handle(self.command, self.path, dict(self.headers.items()), body,
                                      self.client_address[0])
            except Exception:  # the handlers map errors themselves; this is a last resort
                log.exception("gateway failure")
                resp = None
            if resp is None:
                self.send_response(500)
                payload = b'{"error":{"code":"internal_error","message":"internal error"}}'
                headers = {"content-type": "application/json"}
            else:
                self.send_response(resp.status)
                payload, headers = resp.body, resp.headers
            for k, v in headers.items():
                if k not in ("content-length", "connection"):
                    self.send_header(k, v)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            log.debug("%s %s", self.address_string(), format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def start_background(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="context-engine-http", daemon=True)
    thread.start()
    return thread
