"""Writing per-sample records (``--records FILE``): JSON Lines, CSV, or Parquet when pyarrow is there.

The format follows the file's suffix: ``.jsonl`` (or ``.ndjson``) writes one JSON object per line,
``.csv`` a header row and one row per sample (empty cells for missing values, ``true``/``false``
for verdicts), ``.parquet`` a Parquet table (only when ``pyarrow`` is importable; it is not a
dependency of advgrad). Rows are written as they come and the file appears, atomically, when the
writer closes without an error: an interrupted run leaves no half-written records.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from advgrad.core.errors import UsageError
from advgrad.io.files import atomic_path

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def record_format(path: str | Path, option: str = "--records") -> str:
    """The format of a records file from its suffix; bad suffixes and Parquet without pyarrow are
    refused in one line (before any work)."""
    suffix = Path(path).suffix.lower()
    found = FORMATS.get(suffix)
    if found is None:
        raise UsageError(
            f"{option} {path}: name a .jsonl, .csv or .parquet file (the suffix chooses the format)", params="records"
        )
    if found == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise UsageError(
            f"{option} {path}: Parquet needs pyarrow (pip install pyarrow); or write .jsonl or .csv", params="records"
        )
    return found


def _cell(value: Any) -> Any:
    """A CSV cell: empty for None, lower-case booleans, the rest as Python writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


class RecordWriter:
    """A context manager that writes rows (dicts with the same keys, in the same order) to ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.format = record_format(path)
        self.rows = 0
        self._stack = ExitStack()
        self._file: IO[str] | None = None
        self._csv: Any = None
        self._table: list[dict[str, Any]] = []  # Parquet: written at the end

    def __enter__(self) -> RecordWriter:
        tmp = self._stack.enter_context(atomic_path(self.path))
        if self.format != "parquet":
            self._file = self._stack.enter_context(open(tmp, "w", encoding="utf-8", newline=""))
        self._tmp = tmp
        return self

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.rows += 1
            if self.format == "jsonl":
                self._file.write(json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n")
            elif self.format == "csv":
                if self._csv is None:
                    self._csv = csv.writer(self._file, lineterminator="\n")
                    self._csv.writerow(list(row))
                self._csv.writerow([_cell(v) for v in row.values()])
            else:
                self._table.append(row)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None and self.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(self._table), self._tmp)
        if self._file is not None:
            self._file.close()
        self._stack.__exit__(kind, error, trace)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a JSON Lines records file (for tests and tools that check a report against them)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
