"""The ``context-engine`` command: serve, keys, demo (and more as the service grows)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _local_env(data_dir: str | None) -> None:
    """Defaults for running on one machine; explicit environment variables win."""
    if data_dir:
        os.environ["CONTEXT_ENGINE_DATA_DIR"] = data_dir
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("CONTEXT_ENGINE_ENVIRONMENT", "local")


def cmd_serve(args: argparse.Namespace) -> int:
    _local_env(args.data_dir)
    from context_engine.local.gateway import LocalGateway
    from context_engine.local.server import bootstrap_dev_tenant, make_server, start_background
    from context_engine.runtime import build_runtime, set_runtime

    rt = build_runtime()
    set_runtime(rt)
    key = bootstrap_dev_tenant(rt)
    try:
        server = make_server(LocalGateway(), args.host, args.port)
    except OSError as err:
        print(f"cannot listen on {args.host}:{args.port}: {err.strerror}; try --port", file=sys.stderr)
        return 2
    url = f"http://{args.host}:{server.server_address[1]}"
    print(f"Context Engine serving on {url}  (data dir: {Path(rt.settings.data_dir).resolve()})", flush=True)
    if key:
        print(f"Dev tenant 'dev' admin key (shown once, keep it): {key}", flush=True)
    from context_engine.pipeline.local import LocalDispatcher

    dispatcher = LocalDispatcher(rt).start()  # events → queues → consumers, workflows on moto, the relay
    from context_engine.observability.gc_tuning import tune_for_requests

    tune_for_requests()
    thread = start_background(server)
    if args.demo:
        from context_engine.local.demo import run_demo

        run_demo(url, key or rt.settings.dev_key)
    try:
        thread.join()
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        server.shutdown()
        dispatcher.stop()
        rt.flush_marks()  # what this process published is marked now, not republished next start
        rt.db.close()
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    _local_env(args.data_dir)
    from context_engine.auth import create_key
    from context_engine.models.domain import Role
    from context_engine.runtime import build_runtime

    rt = build_runtime()
    key_id, key = create_key(rt.db, args.tenant, Role(args.role), agent_id=args.agent, name=args.name)
    print(f"key_id: {key_id}\nkey: {key}\n(the key is shown once; only its SHA-256 hash is stored)")
    rt.db.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from context_engine.local.demo import run_demo

    key = args.key or os.environ.get("CONTEXT_ENGINE_DEV_KEY")
    if not key:
        print("demo needs --key or CONTEXT_ENGINE_DEV_KEY", file=sys.stderr)
        return 2
    run_demo(args.url, key)
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    _local_env(args.data_dir)
    from context_engine.pipeline.invoke import invoke

    return invoke(args.function, Path(args.event))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="context-engine", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the local service on the embedded default")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--data-dir", default=None, help="default .context-engine/ or CONTEXT_ENGINE_DATA_DIR")
    s.add_argument("--demo", action="store_true", help="after start, write a few turns and query context")
    s.set_defaults(fn=cmd_serve)

    k = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    kc = k.add_parser("create", help="create a key and print it once")
    kc.add_argument("--tenant", required=True)
    kc.add_argument("--role", required=True, choices=["admin", "writer", "reader", "auditor"])
    kc.add_argument("--agent", default=None, help="scope the key to one agent")
    kc.add_argument("--name", default=None)
    kc.add_argument("--data-dir", default=None)
    kc.set_defaults(fn=cmd_keys_create)

    d = sub.add_parser("demo", help="write a few turns to a running server and query context")
    d.add_argument("--url", default="http://127.0.0.1:8080")
    d.add_argument("--key", default=None)
    d.set_defaults(fn=cmd_demo)

    i = sub.add_parser("invoke", help="run one function's handler locally on an event file (events/samples/)")
    i.add_argument("function", help="a function of wiring.FUNCTIONS, e.g. write, index, compress, rebuild, relay")
    i.add_argument("event", help="the event JSON, e.g. events/samples/sqs/index_turn_written.json")
    i.add_argument("--data-dir", default=None)
    i.set_defaults(fn=cmd_invoke)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
