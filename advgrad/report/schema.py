"""The JSON Schema of the report written by ``advgrad eval --json`` (advgrad/report/schema.json,
documented in docs/report-schema.md)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def report_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) that every report validates against."""
    return json.loads((resources.files("advgrad") / "report" / "schema.json").read_text(encoding="utf-8"))
