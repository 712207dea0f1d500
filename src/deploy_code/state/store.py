"""SQLite store with one writer thread, so the event loop never waits on the disk.

Tables, each bounded (``retention:`` in the file, :class:`~deploy_code.config.RetentionSpec`):
  replicas     one row per live replica process (service, index) -> pid, pgid, start time, ports, log path.
               Bounded by the number of replicas the file asks for: rows are deleted when a replica stops.
  events       the event history: the newest ``events_max_count`` rows no older than ``events_max_age``
               (trimmed every ``_TRIM_EVERY`` inserts, at open, and on :meth:`StateStore.trim`).
  deployments  one row per ``up``: opened by ``DeploymentStarted``, closed by ``DeploymentFinished``
               (or marked ``cancelled`` when the store closes first); the newest ``deployments_max`` kept.
  snapshots    the deployed state for rollback (config text and hash, replicas and ports per service);
               the newest ``snapshots_max_count`` whose sizes add up to at most ``snapshots_max_bytes``.
  meta         a few key/value pairs (orchestrator pid, config path).

Readers that are not the orchestrator (the CLI) open the file read-only with :class:`StateReader`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from deploy_code.config import RetentionSpec
from deploy_code.errors import ErrorCode, SupervisionError
from deploy_code.events import DeploymentFinished, DeploymentStarted, Event

__all__ = [
    "EVENT_RETENTION",
    "DeploymentRow",
    "EventRow",
    "ReplicaRecord",
    "SnapshotInfo",
    "StateReader",
    "StateStore",
]

EVENT_RETENTION = RetentionSpec().events_max_count  # default rows kept in `events`
_QUEUE_BOUND = 65_536  # pending writes; the writer drains far faster than replicas change state
_TRIM_EVERY = 256  # events are trimmed once per this many inserts: one DELETE per batch keeps it cheap
_QUERY_MAX = 10_000  # rows one read may return (the CLI pages with `after_id`)
log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replicas (
  service TEXT NOT NULL, idx INTEGER NOT NULL, pid INTEGER NOT NULL, pgid INTEGER NOT NULL,
  start_time INTEGER NOT NULL, ports TEXT NOT NULL, log_path TEXT NOT NULL, spawned_at REAL NOT NULL,
  PRIMARY KEY (service, idx));
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL, service TEXT,
  body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deployments (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL,
  outcome TEXT NOT NULL, duration_s REAL, message TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, deployment_id INTEGER, config_hash TEXT NOT NULL,
  size_bytes INTEGER NOT NULL, body TEXT NOT NULL);
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
    # Hash of the service spec the process was started from: the next `up` adopts it only while the
    # file still says the same (an interrupted rollout's old-version replicas are replaced). "" unknown.
    spec_hash: str = ""


@dataclass(frozen=True, slots=True)
class EventRow:
    """One stored event: its row id (increasing), and the event's fields as plain data in ``body``."""

    id: int
    at: float
    kind: str
    service: str | None
    body: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """``body`` with the row ``id`` first (the JSON form of ``deploy-code events``)."""
        return {"id": self.id, **self.body}


@dataclass(frozen=True, slots=True)
class DeploymentRow:
    """One ``up``: ``outcome`` is ``running`` until it is known (``ready``, ``failed``, ``cancelled``)."""

    id: int
    name: str
    started_at: float
    finished_at: float | None
    outcome: str
    duration_s: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON / YAML output."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A stored snapshot without its body (:meth:`StateStore.snapshot` returns the body)."""

    id: int
    at: float
    deployment_id: int | None
    config_hash: str
    size_bytes: int


_Op = Callable[[sqlite3.Connection], object]
_T = TypeVar("_T")


class StateStore:
    """The state directory's SQLite file. Reads are synchronous (start-up only); writes are queued.

    Args:
        path: the database file (created with its tables if missing).
        retention: the bounds of the tables (the file's ``retention:``).
        wall_time: seconds since the epoch, for age retention (a test passes a fake).
    """

    def __init__(
        self,
        path: Path,
        retention: RetentionSpec | None = None,
        wall_time: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.retention = retention or RetentionSpec()
        self._wall_time = wall_time
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(replicas)")}
        if "spec_hash" not in columns:  # a state file from before spec hashes: add the column
            self._conn.execute("ALTER TABLE replicas ADD COLUMN spec_hash TEXT NOT NULL DEFAULT ''")
        self._trim_events(self._conn)  # an old file may hold more than today's bounds allow
        # Reads get their own connection: the API reads from worker threads while the writer commits,
        # and WAL lets a reader see the last commit without waiting for (or joining) a write.
        self._rconn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._rlock = threading.Lock()
        self._queue: queue.Queue[_Op | None] = queue.Queue(maxsize=_QUEUE_BOUND)
        self._thread = threading.Thread(target=self._writer, name="deploy-code-store", daemon=True)
        self._thread.start()
        self._closed = False

    # --- reads (each waits for the queued writes first; any thread) -------------------------------
    def load_replicas(self) -> list[ReplicaRecord]:
        """Every recorded replica."""
        rows = self._conn.execute(
            "SELECT service, idx, pid, pgid, start_time, ports, log_path, spawned_at, spec_hash FROM replicas"
        ).fetchall()
        return [
            ReplicaRecord(
                r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), json.loads(r[5]), r[6], r[7], str(r[8])
            )
            for r in rows
        ]

    def get_meta(self, key: str) -> str | None:
        """A stored value, or None."""
        row = self._read(lambda c: c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone())
        return None if row is None else str(row[0])

    def count_events(self) -> int:
        """Rows in the events table (tests check the retention bound)."""
        return int(self._read(lambda c: c.execute("SELECT COUNT(*) FROM events").fetchone()[0]))

    def recent_events(self, limit: int = 100, service: str | None = None) -> list[dict[str, object]]:
        """The newest ``limit`` events' bodies, oldest first."""
        return [row.body for row in self.events(limit=limit, service=service)]

    def events(
        self,
        *,
        limit: int = 100,
        service: str | None = None,
        kind: str | None = None,
        after_id: int | None = None,
    ) -> list[EventRow]:
        """Stored events, oldest first (see :func:`query_events`)."""
        return self._read(
            lambda c: query_events(c, limit=limit, service=service, kind=kind, after_id=after_id)
        )

    def deployments(self, limit: int = 100) -> list[DeploymentRow]:
        """The newest ``limit`` deployments, newest first."""
        return self._read(lambda c: query_deployments(c, limit))

    def snapshots(self) -> list[SnapshotInfo]:
        """Every stored snapshot, newest first, without bodies."""
        return self._read(query_snapshots)

    def snapshot(self, snapshot_id: int | None = None) -> dict[str, Any] | None:
        """A snapshot's body (the newest when ``snapshot_id`` is None), or None."""
        return self._read(lambda c: query_snapshot(c, snapshot_id))

    def _read(self, query: Callable[[sqlite3.Connection], _T]) -> _T:
        # Safe from any thread: waits for the queued writes, then reads on the reading connection.
        self.flush()
        with self._rlock:
            return query(self._rconn)

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
            rec.spec_hash,
        )
        self._submit(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO replicas (service, idx, pid, pgid, start_time, ports, log_path, "
                "spawned_at, spec_hash) VALUES (?,?,?,?,?,?,?,?,?)",
                args,
            )
        )

    def delete_replica(self, service: str, index: int) -> None:
        """Forget a replica whose process is gone."""
        self._submit(lambda c: c.execute("DELETE FROM replicas WHERE service=? AND idx=?", (service, index)))

    def record_event(self, event: Event) -> None:
        """Append an event; the table keeps within ``events_max_count`` and ``events_max_age``."""
        body = {k: (str(v) if hasattr(v, "value") else v) for k, v in _fields(event).items()}
        service = getattr(event, "service", None)
        args = (event.at, event.kind, service, json.dumps(body))

        def op(c: sqlite3.Connection) -> None:
            cur = c.execute("INSERT INTO events (at, kind, service, body) VALUES (?,?,?,?)", args)
            if (cur.lastrowid or 0) % _TRIM_EVERY == 0:
                self._trim_events(c)

        self._submit(op)

    def record_deployment(self, event: DeploymentStarted | DeploymentFinished) -> None:
        """Open a ``deployments`` row (started) or close the newest open one of that name (finished).

        A new start marks rows still open as ``interrupted``: one orchestrator runs per state
        directory, so an open row at a start belongs to one that died before its outcome.
        """
        keep = self.retention.deployments_max
        if isinstance(event, DeploymentStarted):
            started = (event.name, event.at, event.message)

            def start(c: sqlite3.Connection) -> None:
                c.execute(
                    "UPDATE deployments SET outcome = 'interrupted' WHERE finished_at IS NULL "
                    "AND outcome = 'running'"
                )
                cur = c.execute(
                    "INSERT INTO deployments (name, started_at, outcome, message) VALUES (?,?,'running',?)",
                    started,
                )
                c.execute("DELETE FROM deployments WHERE id <= ?", ((cur.lastrowid or 0) - keep,))

            self._submit(start)
            return
        finished = (event.at, event.outcome, event.duration_s, event.message, event.name)

        def finish(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "UPDATE deployments SET finished_at = ?, outcome = ?, duration_s = ?, message = ? "
                "WHERE id = (SELECT MAX(id) FROM deployments WHERE name = ? AND finished_at IS NULL)",
                finished,
            )
            if cur.rowcount == 0:  # no start was recorded: one complete row
                at, outcome, duration, message, name = finished
                cur = c.execute(
                    "INSERT INTO deployments (name, started_at, finished_at, outcome, duration_s, message) "
                    "VALUES (?,?,?,?,?,?)",
                    (name, at - duration, at, outcome, duration, message),
                )
                c.execute("DELETE FROM deployments WHERE id <= ?", ((cur.lastrowid or 0) - keep,))

        self._submit(finish)

    def save_snapshot(
        self, config_text: str, services: Mapping[str, Mapping[str, Any]], at: float | None = None
    ) -> int | None:
        """Store the deployed state for rollback, linked to the newest deployment row.

        Args:
            config_text: the deployment file's text as deployed (not rendered environments: secrets
                from env files stay out of the store).
            services: per service, plain data such as ``{"replicas": 2, "ports": [{"http": 30001}, ...]}``.
            at: wall time (default: now).

        Returns:
            The snapshot's size in bytes, or None when it alone exceeds ``snapshots_max_bytes`` (logged,
            not stored). Older snapshots are dropped to keep within the count and byte bounds.
        """
        doc = {
            "format": 1,
            "config_hash": hashlib.sha256(config_text.encode()).hexdigest(),
            "config": config_text,
            "services": {name: dict(value) for name, value in services.items()},
        }
        body = json.dumps(doc, sort_keys=True)
        size = len(body.encode())
        max_count, max_bytes = self.retention.snapshots_max_count, self.retention.snapshots_max_bytes
        if size > max_bytes:
            log.warning("snapshot of %d bytes exceeds snapshots_max_bytes (%d): not stored", size, max_bytes)
            return None
        args = (self._wall_time() if at is None else at, doc["config_hash"], size, body)

        def op(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO snapshots (at, deployment_id, config_hash, size_bytes, body) "
                "VALUES (?, (SELECT MAX(id) FROM deployments), ?, ?, ?)",
                args,
            )
            # Newest first: drop everything past the count, then everything past the byte budget.
            c.execute(
                "DELETE FROM snapshots WHERE id IN (SELECT id FROM ("
                "  SELECT id, ROW_NUMBER() OVER (ORDER BY id DESC) AS n,"
                "         SUM(size_bytes) OVER (ORDER BY id DESC) AS total FROM snapshots)"
                " WHERE n > ? OR total > ?)",
                (max_count, max_bytes),
            )

        self._submit(op)
        return size

    def trim(self) -> None:
        """Apply the event retention now (it also runs every ``_TRIM_EVERY`` inserts and at open)."""
        self._submit(self._trim_events)

    def set_meta(self, key: str, value: str) -> None:
        """Store a key/value pair."""
        self._submit(lambda c: c.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, value)))

    def publish(self, event: Event) -> None:
        """EventSink: persist the event (and the deployments row it opens or closes)."""
        self.record_event(event)
        if isinstance(event, DeploymentStarted | DeploymentFinished):
            self.record_deployment(event)

    def flush(self) -> None:
        """Block until every queued write is committed."""
        if not self._closed:
            self._queue.join()

    def close(self) -> None:
        """Commit what is queued, stop the writer, close the file. Idempotent.

        A deployment still open is closed as ``cancelled``: its orchestrator ends before its outcome.
        """
        if self._closed:
            return
        now = self._wall_time()
        self._submit(
            lambda c: c.execute(
                "UPDATE deployments SET outcome = 'cancelled', finished_at = ?, "
                "duration_s = MAX(0, ? - started_at) WHERE finished_at IS NULL AND outcome = 'running'",
                (now, now),
            )
        )
        self._queue.put(None)
        self._thread.join()
        self._closed = True
        self._conn.close()
        with self._rlock:
            self._rconn.close()

    def _trim_events(self, c: sqlite3.Connection) -> None:
        row = c.execute("SELECT MAX(id) FROM events").fetchone()
        if row is None or row[0] is None:
            return
        c.execute("DELETE FROM events WHERE id <= ?", (int(row[0]) - self.retention.events_max_count,))
        # Events arrive in time order, so the expired ones are the oldest ids: find the first one young
        # enough (a scan from the oldest that stops there) and drop everything before it.
        cutoff = self._wall_time() - self.retention.events_max_age
        young = c.execute("SELECT id FROM events WHERE at >= ? ORDER BY id LIMIT 1", (cutoff,)).fetchone()
        c.execute("DELETE FROM events WHERE id < ?", (int(row[0]) + 1 if young is None else int(young[0]),))

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
                log.exception("state store write failed; %d queued writes rolled back", len(batch))
                self._conn.execute("ROLLBACK")
            finally:
                for _ in batch:
                    self._queue.task_done()


class StateReader:
    """A read-only view of a ``state.db``, for the CLI: works whether or not an orchestrator runs.

    Tables missing from an older file read as empty.

    Args:
        path: the database file.

    Raises:
        SupervisionError: S006 when the file is missing or cannot be opened.
    """

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise SupervisionError(
                f"no state at {path}: nothing was deployed from this file yet",
                code=ErrorCode.S006,
                hint="run `deploy-code up` first",
            )
        try:
            self._conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            self._tables: frozenset[str] = frozenset()
            self._has("events")
        except sqlite3.Error as exc:
            raise SupervisionError(
                f"cannot read the state at {path}: {exc}", code=ErrorCode.S006, hint="check its permissions"
            ) from None

    def _has(self, table: str) -> bool:
        # Re-read the table list while one is missing: the orchestrator may be creating the file now.
        if table not in self._tables:
            rows = self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
            self._tables = frozenset(str(r[0]) for r in rows)
        return table in self._tables

    def events(
        self,
        *,
        limit: int = 100,
        service: str | None = None,
        kind: str | None = None,
        after_id: int | None = None,
    ) -> list[EventRow]:
        """Stored events, oldest first (see :func:`query_events`)."""
        if not self._has("events"):
            return []
        return query_events(self._conn, limit=limit, service=service, kind=kind, after_id=after_id)

    def last_event_id(self) -> int:
        """The newest event's id (0 when there is none): where ``events -f`` starts following."""
        if not self._has("events"):
            return 0
        row = self._conn.execute("SELECT MAX(id) FROM events").fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    def deployments(self, limit: int = 100) -> list[DeploymentRow]:
        """The newest ``limit`` deployments, newest first."""
        return query_deployments(self._conn, limit) if self._has("deployments") else []

    def snapshots(self) -> list[SnapshotInfo]:
        """Every stored snapshot, newest first, without bodies."""
        return query_snapshots(self._conn) if self._has("snapshots") else []

    def snapshot(self, snapshot_id: int | None = None) -> dict[str, Any] | None:
        """A snapshot's body (the newest when ``snapshot_id`` is None), or None."""
        return query_snapshot(self._conn, snapshot_id) if self._has("snapshots") else None

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> StateReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def query_events(
    conn: sqlite3.Connection,
    *,
    limit: int = 100,
    service: str | None = None,
    kind: str | None = None,
    after_id: int | None = None,
) -> list[EventRow]:
    """Events, oldest first: the newest ``limit`` ones, or with ``after_id`` the first ``limit`` after it.

    Args:
        conn: an open connection to the store.
        limit: rows at most (capped at ``_QUERY_MAX``).
        service: only this service's events.
        kind: only this kind (``replica.transition``, ``alert.fired``, ...); a trailing ``*`` is a prefix.
        after_id: only events with a larger id (to follow the table).
    """
    where: list[str] = []
    args: list[object] = []
    if service is not None:
        where.append("service = ?")
        args.append(service)
    if kind is not None:
        where.append("kind GLOB ?" if kind.endswith("*") else "kind = ?")
        args.append(kind)
    if after_id is not None:
        where.append("id > ?")
        args.append(after_id)
    sql = "SELECT id, at, kind, service, body FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    newest = after_id is None
    sql += f" ORDER BY id {'DESC' if newest else 'ASC'} LIMIT ?"
    rows = conn.execute(sql, (*args, max(0, min(limit, _QUERY_MAX)))).fetchall()
    if newest:
        rows.reverse()
    return [EventRow(int(r[0]), float(r[1]), str(r[2]), r[3], json.loads(r[4])) for r in rows]


def query_deployments(conn: sqlite3.Connection, limit: int = 100) -> list[DeploymentRow]:
    """The newest ``limit`` deployments, newest first."""
    rows = conn.execute(
        "SELECT id, name, started_at, finished_at, outcome, duration_s, message FROM deployments "
        "ORDER BY id DESC LIMIT ?",
        (max(0, min(limit, _QUERY_MAX)),),
    ).fetchall()
    return [DeploymentRow(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]


def query_snapshots(conn: sqlite3.Connection) -> list[SnapshotInfo]:
    """Every stored snapshot (bounded by retention), newest first, without bodies."""
    rows = conn.execute(
        "SELECT id, at, deployment_id, config_hash, size_bytes FROM snapshots ORDER BY id DESC"
    ).fetchall()
    return [SnapshotInfo(int(r[0]), float(r[1]), r[2], str(r[3]), int(r[4])) for r in rows]


def query_snapshot(conn: sqlite3.Connection, snapshot_id: int | None = None) -> dict[str, Any] | None:
    """A snapshot's body (the newest when ``snapshot_id`` is None), or None."""
    if snapshot_id is None:
        row = conn.execute("SELECT body FROM snapshots ORDER BY id DESC LIMIT 1").fetchone()
    else:
        row = conn.execute("SELECT body FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def _fields(event: Event) -> dict[str, object]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}
