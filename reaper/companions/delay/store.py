"""Durable storage for the local delay service: one SQLite table of pending and finished deliveries."""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS deliveries (
    dedup_key   TEXT PRIMARY KEY,
    target      TEXT NOT NULL,
    body        BLOB NOT NULL,
    due_at      REAL NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    state       TEXT NOT NULL DEFAULT 'pending',
    created_at  REAL NOT NULL,
    last_status INTEGER,
    last_error  TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, due_at);
"""


def _private_file(path: Path) -> None:
    """Create the database readable by its owner only; SQLite gives its -wal and -shm files that mode.

    The table holds signed follow-ups: nothing secret, but nothing for other local users either.
    """
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)


@dataclass(frozen=True)
class Delivery:
    """One event waiting to be POSTed to its target."""

    dedup_key: str
    target: str
    body: bytes
    due_at: float
    attempts: int


class DelayStore:
    """Thread-safe access to the deliveries table; a schedule is durable once ``add`` returns."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            _private_file(Path(path))
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)

    def add(self, dedup_key: str, target: str, body: bytes, due_at: float, now: float) -> bool:
        """Store a delivery; False when the dedup key was seen before (nothing changes)."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO deliveries (dedup_key, target, body, due_at, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (dedup_key, target, body, due_at, now),
            )
            return cursor.rowcount == 1

    def claim_due(self, now: float, limit: int) -> list[Delivery]:
        """Pending deliveries due by ``now`` that no worker holds yet; they are held until released."""
        with self._lock:
            rows = self._db.execute(
                "SELECT dedup_key, target, body, due_at, attempts FROM deliveries"
                " WHERE state = 'pending' AND due_at <= ? ORDER BY due_at LIMIT ?",
                (now, limit + len(self._in_flight)),
            ).fetchall()
            claimed = [Delivery(*row) for row in rows if row[0] not in self._in_flight][:limit]
            self._in_flight.update(d.dedup_key for d in claimed)
            return claimed

    def delivered(self, dedup_key: str, status: int) -> None:
        """Record a successful delivery."""
        self._finish(
            "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, last_status = ?,"
            " last_error = NULL WHERE dedup_key = ?",
            (status, dedup_key),
        )

    def retry_at(self, dedup_key: str, due_at: float, status: int | None, error: str | None) -> None:
        """Record a failed attempt and when to try again."""
        self._finish(
            "UPDATE deliveries SET due_at = ?, attempts = attempts + 1, last_status = ?,"
            " last_error = ? WHERE dedup_key = ?",
            (due_at, status, error, dedup_key),
        )

    def give_up(self, dedup_key: str, status: int | None, error: str | None) -> None:
        """Stop retrying a delivery; it stays in the table as ``dead`` for an operator."""
        self._finish(
            "UPDATE deliveries SET state = 'dead', attempts = attempts + 1, last_status = ?,"
            " last_error = ? WHERE dedup_key = ?",
            (status, error, dedup_key),
        )

    def next_due(self) -> float | None:
        """When the earliest pending delivery is due."""
        with self._lock:
            row = self._db.execute("SELECT MIN(due_at) FROM deliveries WHERE state = 'pending'").fetchone()
            return float(row[0]) if row and row[0] is not None else None

    def counts(self) -> dict[str, int]:
        """How many deliveries are in each state."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state").fetchall()
        return {str(state): int(count) for state, count in rows}

    def dead(self, limit: int = 20) -> list[dict[str, object]]:
        """The most recent dead-lettered deliveries, for an operator."""
        with self._lock:
            rows = self._db.execute(
                "SELECT dedup_key, target, last_status, last_error, attempts FROM deliveries"
                " WHERE state = 'dead' ORDER BY created_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        names = ("dedup_key", "target", "last_status", "last_error", "attempts")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def prune(self, older_than: float) -> int:
        """Forget finished deliveries created before ``older_than`` (their dedup keys expire too)."""
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM deliveries WHERE state != 'pending' AND created_at < ?", (older_than,)
            )
            return cursor.rowcount

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _finish(self, sql: str, params: tuple[object, ...]) -> None:
        with self._lock:
            self._db.execute(sql, params)
            self._in_flight.discard(str(params[-1]))
