"""SQLite store with one writer thread, so the event loop never waits on the disk.

Tables:
  replicas  one row per live replica process (service, index) -> pid, pgid, start time, ports, log path.
            Bounded by the number of replicas the file asks for: rows are deleted when a replica stops.
  events    the event history, bounded by EVENT_RETENTION rows (oldest deleted in the same transaction).
  meta      a few key/value pairs (orchestrator pid, config path).
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy_code.events import Event

__all__ = ["EVENT_RETENTION", "ReplicaRecord", "StateStore"]

EVENT_RETENTION = 10_000  # rows kept in `events`; enough for a day of a busy deployment
_QUEUE_BOUND = 65_536  # pending writes; the writer drains far faster than replicas change state

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replicas (
  service TEXT NOT NULL, idx INTEGER NOT NULL, pid INTEGER NOT NULL, pgid INTEGER NOT NULL,
  start_time INTEGER NOT NULL, ports TEXT NOT NULL, log_path TEXT NOT NULL, spawned_at REAL NOT NULL,
  PRIMARY KEY (service, idx));
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL, service TEXT,
  body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class ReplicaRecord:
    """What is needed to find a replica's process again after an orchestrator restart."""

    service: str
    index: int
    pid: int
    pgid: int
    start_time: int
    ports: dict[str, int]
    log_path: str
    spawned_at: float


_Op = Callable[[sqlite3.Connection], object]


class StateStore:
    """The state directory's SQLite file. Reads are synchronous (start-up only); writes are queued.

    Args:
        path: the database file (created with its tables if missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._queue: queue.Queue[_Op | None] = queue.Queue(maxsize=_QUEUE_BOUND)
        self._thread = threading.Thread(target=self._writer, name="deploy-code-store", daemon=True)
        self._thread.start()
        self._closed = False

    # --- reads (start-up, before the loop is busy) -------------------------------------------------
    def load_replicas(self) -> list[ReplicaRecord]:
        """Every recorded replica."""
        rows = self._conn.execute(
            "SELECT service, idx, pid, pgid, start_time, ports, log_path, spawned_at FROM replicas"
        ).fetchall()
        return [
            ReplicaRecord(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), json.loads(r[5]), r[6], r[7])
            for r in rows
        ]

    def get_meta(self, key: str) -> str | None:
        """A stored value, or None."""
        self.flush()
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def count_events(self) -> int:
        """Rows in the events table (tests check the retention bound)."""
        self.flush()
        return int(self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def recent_events(self, limit: int = 100, service: str | None = None) -> list[dict[str, object]]:
        """The newest ``limit`` events, oldest first."""
        self.flush()
        if service is None:
            rows = self._conn.execute("SELECT body FROM events ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = self._conn.execute(
                "SELECT body FROM events WHERE service = ? ORDER BY id DESC LIMIT ?", (service, limit)
            ).fetchall()
        return [json.loads(r[0]) for r in reversed(rows)]

    # --- writes (queued to the writer thread) -----------------------------------------------------
    def put_replica(self, rec: ReplicaRecord) -> None:
        """Record (or replace) a live replica."""
        args = (
            rec.service,
            rec.index,
            rec.pid,
            rec.pgid,
            rec.start_time,
            json.dumps(rec.ports),
            rec.log_path,
            rec.spawned_at,
        )
        self._submit(lambda c: c.execute("INSERT OR REPLACE INTO replicas VALUES (?,?,?,?,?,?,?,?)", args))

    def delete_replica(self, service: str, index: int) -> None:
        """Forget a replica whose process is gone."""
        self._submit(lambda c: c.execute("DELETE FROM replicas WHERE service=? AND idx=?", (service, index)))

    def record_event(self, event: Event) -> None:
        """Append an event; the table keeps the newest EVENT_RETENTION rows."""
        body = {k: (str(v) if hasattr(v, "value") else v) for k, v in _fields(event).items()}
        service = getattr(event, "service", None)
        args = (event.at, event.kind, service, json.dumps(body))

        def op(c: sqlite3.Connection) -> None:
            cur = c.execute("INSERT INTO events (at, kind, service, body) VALUES (?,?,?,?)", args)
            last = cur.lastrowid or 0
            if last % 256 == 0:  # trim in batches: one DELETE per 256 inserts keeps it cheap
                c.execute("DELETE FROM events WHERE id <= ?", (last - EVENT_RETENTION,))

        self._submit(op)

    def set_meta(self, key: str, value: str) -> None:
        """Store a key/value pair."""
        self._submit(lambda c: c.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, value)))

    def publish(self, event: Event) -> None:
        """EventSink: persist the event."""
        self.record_event(event)

    def flush(self) -> None:
        """Block until every queued write is committed."""
        if not self._closed:
            self._queue.join()

    def close(self) -> None:
        """Commit what is queued, stop the writer, close the file. Idempotent."""
        if self._closed:
            return
        self._queue.put(None)
        self._thread.join()
        self._closed = True
        self._conn.close()

    def _submit(self, op: _Op) -> None:
        if self._closed:
            return
        self._queue.put(op)

    def _writer(self) -> None:
        while True:
            op = self._queue.get()
            if op is None:
                self._queue.task_done()
                return
            batch = [op]
            # Group what is already queued into one transaction: one commit for a burst of spawns.
            while len(batch) < 512:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    self._queue.task_done()
                    break
                batch.append(nxt)
            try:
                self._conn.execute("BEGIN")
                for item in batch:
                    item(self._conn)
                self._conn.execute("COMMIT")
            except sqlite3.Error:
                self._conn.execute("ROLLBACK")
            finally:
                for _ in batch:
                    self._queue.task_done()


def _fields(event: Event) -> dict[str, object]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}
