"""The results directory's own records: experiment spec, status and trials, in SQLite.

``<results>/experiment.db`` holds one row per trial and a few key/value rows (the experiment
YAML as parsed, its status, the suggestion state). Every change is one transaction, so a crash
or SIGKILL leaves either the old or the new record, never half of one (WAL journal,
``synchronous=NORMAL``: a power cut may lose the last transactions, never consistency).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from katib.controller import trials as trial_records
from katib.controller.trials import TrialRecord

STATE_DB = "experiment.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    name TEXT PRIMARY KEY, idx INTEGER NOT NULL, data TEXT NOT NULL
);
"""


class ResultsStore:
    """Experiment and trial records of one results directory."""

    def __init__(self, results_dir: Path, create: bool = True) -> None:
        path = results_dir / STATE_DB
        if not create and not path.exists():
            raise FileNotFoundError(f"{results_dir} holds no experiment ({STATE_DB} is missing)")
        results_dir.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def get(self, key: str) -> Any:
        """A JSON value stored under ``key``, None if absent."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, **values: Any) -> None:
        """Store JSON values under their keys, in one transaction."""
        self.save([], **values)

    def trials(self) -> list[TrialRecord]:
        """Every trial, in creation order."""
        rows = self._conn.execute("SELECT data FROM trials ORDER BY idx").fetchall()
        return [trial_records.from_dict(json.loads(row[0])) for row in rows]

    def save(self, records: Iterable[TrialRecord], **values: Any) -> None:
        """Upsert trial records and meta values atomically."""
        trial_rows = [(r.name, r.index, json.dumps(trial_records.to_dict(r))) for r in records]
        meta_rows = [(key, json.dumps(value)) for key, value in values.items()]
        with self._conn:
            self._conn.execute("BEGIN")
            if trial_rows:
                self._conn.executemany(
                    "INSERT INTO trials (name, idx, data) VALUES (?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET data = excluded.data",
                    trial_rows,
                )
            if meta_rows:
                self._conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    meta_rows,
                )

    def close(self) -> None:
        """Close the database."""
        self._conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
