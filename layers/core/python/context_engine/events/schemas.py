"""JSON Schemas of the domain events, generated from the pydantic models into ``events/schemas/``.

Each schema describes the event as EventBridge delivers it (envelope with ``detail-type``,
``source`` and ``detail``), so it can be registered in an EventBridge schema registry or
used by any consumer. A test fails when the files drift from the models.

    python -m context_engine.events.schemas --write   # regenerate
    python -m context_engine.events.schemas --check   # exit 1 when out of date
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

from context_engine.events import generated
from context_engine.events.models import EVENT_MODELS
from context_engine.wiring import EVENT_SOURCE

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def repo_root() -> Path:
    # layers/core/python/context_engine/events/schemas.py → repository root
    return Path(__file__).resolve().parents[5]


def schema_dir() -> Path:
    return repo_root() / "events" / "schemas"


def event_schema(detail_type: str) -> dict[str, Any]:
    detail = EVENT_MODELS[detail_type].model_json_schema(mode="serialization")
    defs = detail.pop("$defs", None)
    schema: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "$id": f"urn:context-engine:events:{detail_type}",
        "title": detail_type,
        "description": inspect.getdoc(EVENT_MODELS[detail_type]) or "",
        "type": "object",
        "required": ["id", "detail-type", "source", "time", "detail"],
        "properties": {
            "version": {"type": "string"},
            "id": {"type": "string"},
            "detail-type": {"const": detail_type},
            "source": {"const": EVENT_SOURCE},
            "account": {"type": "string"},
            "time": {"type": "string", "format": "date-time"},
            "region": {"type": "string"},
            "resources": {"type": "array", "items": {"type": "string"}},
            "detail": detail,
        },
    }
    if defs:
        schema["$defs"] = defs
    return schema


def expected_files() -> dict[str, str]:
    return {f"{name}.json": generated.render(event_schema(name)) for name in EVENT_MODELS}


def stale_files(folder: Path | None = None) -> list[str]:
    """Names of schema files that are missing, different, or no longer generated."""
    return generated.stale(folder or schema_dir(), expected_files())


def write(folder: Path | None = None) -> list[str]:
    return generated.write(folder or schema_dir(), expected_files())


def main(argv: list[str] | None = None) -> int:
    return generated.cli(argv, doc=__doc__, what="events/schemas", module="context_engine.events.schemas",
                         write_fn=write, stale_fn=stale_files)


if __name__ == "__main__":
    sys.exit(main())
