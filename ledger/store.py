"""The SQL store: schema and engine (SQLite by default, PostgreSQL by URL).

Holds what the chain must not (encrypted documents), what the pipeline needs to survive a
crash (the outbox of signed transactions and each caller's submission record), and the
index of chain events (derived: it can be rebuilt from block 0). On SQLite the index and the
document vault are files of their own beside the main one (FilePart), each with its own writer.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateIndex

from ledger.errors import StoreError

log = logging.getLogger("claimledger.store")

SQLITE_POOL_SIZE = 48
PART_CACHE_KIB = 32 * 1024
"""Page cache of the index and the vault, a connection: their keys are hashes, so each write of a thousand
rows lands on pages all over their indexes, and with SQLite's default 2 MB most of them were read again
every time (a thousand documents into a vault of 100,000: 45 ms of CPU a write, 34 ms with 64 MB)."""
WAL_CHECKPOINT_PAGES = 10_000
"""Pages the write-ahead log takes before it is copied back into its database (SQLite's default: 1,000).
Fewer, larger checkpoints write a page that changes often once, not once a checkpoint (the vault's writes
above: 33 ms with this alone, 28 ms with both). The log file grows to about 40 MB."""
IDLE_WRITER_S = 30.0  # a group commit's writer thread ends after this long without work
T = TypeVar("T")

metadata = MetaData()

# ---------------------------------------------------------------- pipeline: outbox and submissions

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account", String(42), nullable=False),
    Column("nonce", BigInteger, nullable=False),
    Column("tx_hash", String(66), nullable=False, unique=True),
    Column("raw", LargeBinary, nullable=False),
    Column("claim_count", Integer, nullable=False),
    # signed -> sent -> mined | reverted | dropped
    Column("status", String(16), nullable=False),
    Column("block_number", BigInteger),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("account", "nonce", name="uq_outbox_account_nonce"),
)

submissions = Table(
    "submissions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("outbox_id", Integer, nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("exact_key", LargeBinary(32), nullable=False),
    Column("document_hash", LargeBinary(32), nullable=False),
    Column("frequency", Integer, nullable=False),
    # pending -> recorded | duplicate | voided | failed
    Column("status", String(16), nullable=False),
    Column("version", Integer),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("outbox_id", "position", name="uq_submission_slot"),
)

# ---------------------------------------------------------------- index of chain events

indexed_events = Table(
    "indexed_events",
    metadata,
    Column("block_number", BigInteger, primary_key=True),
    Column("log_index", Integer, primary_key=True),
    Column("block_hash", String(66), nullable=False),
    Column("tx_hash", String(66), nullable=False),
    Column("tx_from", String(42)),
    Column("block_time", BigInteger, nullable=False),
    Column("name", String(48), nullable=False),
    Column("exact_key", LargeBinary(32)),
    Column("version", Integer),
    Column("org", Integer),
    Column("args", Text, nullable=False),
    Index("ix_events_claim", "exact_key", "version"),
    Index("ix_events_name_time", "name", "block_time"),
)

indexed_claims = Table(
    "indexed_claims",
    metadata,
    Column("exact_key", LargeBinary(32), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("provider_org", Integer, nullable=False),
    Column("payer_org", Integer, nullable=False),
    Column("key_id", BigInteger, nullable=False),
    Column("line_count", Integer, nullable=False),
    Column("total_charge", BigInteger, nullable=False),
    Column("frequency", Integer, nullable=False),
    Column("suspect", Boolean, nullable=False),
    Column("document_hash", LargeBinary(32), nullable=False, index=True),
    Column("replaces_key", LargeBinary(32)),
    Column("replaces_version", Integer),
    Column("outcome", String(16)),
    Column("allowed_amount", BigInteger),
    Column("paid_amount", BigInteger),
    Column("submitted_block", BigInteger, nullable=False),
    Column("submitted_tx", String(66), nullable=False),
    Column("submitted_at", BigInteger, nullable=False),
    Column("paid_at", BigInteger),
    Column("updated_block", BigInteger, nullable=False),
    # A listing's order (newest first, ledger.listing) under each scope: walked from its end, 50 rows read for
    # a page of 50. Ordered by submitted_at instead, a page was every one of the organisation's rows sorted.
    Index("ix_claims_provider_page", "provider_org", "submitted_block", "exact_key", "version"),
    Index("ix_claims_payer_page", "payer_org", "submitted_block", "exact_key", "version"),
    Index("ix_claims_page", "submitted_block", "exact_key", "version"),
)
RETIRED_INDEXES = {"indexed_claims": ("ix_claims_provider", "ix_claims_payer")}
"""Indexes an older layout made, by table, dropped at start (every write paid for them, no query uses them)."""

indexed_blocks = Table(
    "indexed_blocks",
    metadata,
    Column("number", BigInteger, primary_key=True),
    Column("hash", String(66), nullable=False),
    Column("parent_hash", String(66), nullable=False),
)

indexer_cursor = Table(
    "indexer_cursor",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("contract", String(42), nullable=False),
    Column("block_number", BigInteger, nullable=False),
    Column("block_hash", String(66), nullable=False),
)

INDEX_TABLES = (indexed_events, indexed_claims, indexed_blocks, indexer_cursor)

# ---------------------------------------------------------------- off-chain documents

documents = Table(
    "documents",
    metadata,
    Column("document_hash", LargeBinary(32), primary_key=True),
    Column("key_id", String(16), nullable=False),
    Column("nonce", LargeBinary(12), nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

claim_references = Table(
    "claim_references",
    metadata,
    Column("tag", LargeBinary(32), primary_key=True),
    Column("document_hash", LargeBinary(32), primary_key=True),
    comment="The provider's claim id (CLM01) of a stored document, as a keyed tag (never in clear): "
    "how an 835's CLP01 or an 837's REF*F8 finds its claim.",
)


VAULT_TABLES = (documents, claim_references)


@dataclass(frozen=True, eq=False)
class FilePart:
    """Tables that SQLite keeps in a file of their own beside the database (``<name><suffix>.db``), attached
    to every connection as ``schema``. SQLite takes one writer a file: the index's and the vault's writes
    then wait for no other writer of the gateway, nor they for them. Queries name tables unqualified, as on
    PostgreSQL, where everything shares the one database. ``derived``: rebuilt from the chain, so tables
    found in the main file (an older layout) are dropped rather than moved."""

    schema: str
    suffix: str
    tables: tuple[Table, ...]
    derived: bool
    lock: threading.RLock = field(default_factory=threading.RLock)


INDEX_PART = FilePart("chainindex", "-index", INDEX_TABLES, derived=True)
VAULT_PART = FilePart("vault", "-vault", VAULT_TABLES, derived=False)
FILE_PARTS = (INDEX_PART, VAULT_PART)


# ---------------------------------------------------------------- access audit log (HIPAA 164.312(b))

access_log = Table(
    "access_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("org", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("claim", String(80)),
    Column("request_id", String(64), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
)

audit_anchors = Table(
    "audit_anchors",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("head", String(64), nullable=False),
    Column("tx_hash", String(66), nullable=False),
    Column("block_number", BigInteger, nullable=False),
)

_APPEND_ONLY_SQLITE = (
    "CREATE TRIGGER IF NOT EXISTS access_log_no_update BEFORE UPDATE ON access_log "
    "BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS access_log_no_delete BEFORE DELETE ON access_log "
    "BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END",
)
_APPEND_ONLY_POSTGRES = (
    "CREATE OR REPLACE FUNCTION access_log_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'access_log is append-only'; END; $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS access_log_append_only ON access_log",
    "CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log "
    "FOR EACH ROW EXECUTE FUNCTION access_log_append_only()",
)


_SQLITE_WRITER = threading.RLock()
_PARTS_APART: weakref.WeakSet[Engine] = weakref.WeakSet()  # SQLite engines whose FILE_PARTS are files of their own


@contextmanager
def writing(engine: Engine, *, part: FilePart | None = None) -> Iterator[Connection]:
    """A write transaction. On SQLite, one at a time in this process: SQLite takes one writer at a
    time anyway, and waiting here costs nothing where its busy handler sleeps 1 to 100 ms a try.
    ``part``: the transaction writes that part's tables only, which on SQLite have a file and so a
    writer of their own."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    lock = part.lock if part is not None and engine in _PARTS_APART else _SQLITE_WRITER
    with lock, engine.begin() as conn:
        yield conn


class GroupCommit(Generic[T]):
    """Writes the items of concurrent callers together, in one call of ``write``, on one writer thread
    of its own: a caller hands its items over (:meth:`submit_future`, or :meth:`submit` to wait) and the
    writer writes everything waiting at that moment in one transaction (a group commit), then the next
    lot; each caller hears when its items are written, or of the writer's error. One transaction for
    many requests instead of one transaction, and one turn of SQLite's single writer, each; and a
    request on an event loop waits for its write without holding a thread."""

    def __init__(self, write: Callable[[list[T]], None], *, name: str = "group-commit") -> None:
        self._write = write
        self._name = name
        self._queue: list[_Waiting[T]] = []
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, items: Sequence[T]) -> None:
        """Write ``items`` (with whatever else is waiting); returns once they are written."""
        self.submit_future(items).result()

    def submit_future(self, items: Sequence[T]) -> Future[None]:
        """Hand ``items`` to the writer; the future is done once they are written (or failed)."""
        waiting = _Waiting(list(items))
        with self._ready:
            self._queue.append(waiting)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._ready.notify()
        return waiting.done

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    if not self._ready.wait(IDLE_WRITER_S) and not self._queue:
                        self._thread = None  # idle: the next caller starts another
                        return
                batch, self._queue = self._queue, []
            self._drain(batch)

    def _drain(self, batch: list[_Waiting[T]]) -> None:
        try:
            self._write([item for w in batch for item in w.items])
        except Exception as exc:  # noqa: BLE001 - every waiting caller must hear of it
            for w in batch:
                w.done.set_exception(exc)
            return
        for w in batch:
            w.done.set_result(None)


@dataclass(slots=True)
class _Waiting(Generic[T]):
    items: list[T]
    done: Future[None] = field(default_factory=Future)


SQLITE_MAX_PARAMS = 32_766
"""SQLite's default limit on the parameters of one statement (3.32 and later)."""
SQLITE_MAX_ROWS = 500
"""Rows a multi-row statement takes at most (a longer statement costs more to prepare than it saves)."""
_INSERT_VALUES = re.compile(r"^(INSERT INTO .+? VALUES )(\([^()]*\))(.*)$", re.DOTALL)
_UPDATE_BY_KEY = re.compile(r"^UPDATE (\w+) SET ((?:\w+ = \?, )*\w+ = \?) WHERE (\w+) = \?$")


def bulk(conn: Connection, statement: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Many rows through one statement, straight through the driver: for the thousand-row writes of the
    pipeline, the indexer, the document vault and the access log, where SQLAlchemy's per-row parameter
    handling costs 3x. ``statement`` uses ``?`` placeholders and is either ``INSERT INTO t (...) VALUES
    (?, ...) [ON CONFLICT ...]`` or ``UPDATE t SET a = ?, ... WHERE key = ?``.

    On SQLite the rows go as multi-row statements (``VALUES (...), (...)``; an UPDATE joins a VALUES list),
    a few hundred rows a statement: the driver's executemany lets go of the GIL around every row, and
    each row then waits for the GIL behind the gateway's busy threads while the process's one SQLite
    writer is held (1,000 rows: 4.7 ms alone, 21 s against two busy threads; as multi-row statements,
    4.5 ms and 145 ms)."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        width = len(rows[0])  # parameters a row; a literal in the row's VALUES takes none
        per = max(1, min(SQLITE_MAX_ROWS, SQLITE_MAX_PARAMS // width))
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            conn.exec_driver_sql(_multi_row(statement, len(chunk)), tuple(v for row in chunk for v in row))
        return
    if conn.dialect.paramstyle in ("format", "pyformat"):
        statement = statement.replace("?", "%s")
    conn.exec_driver_sql(statement, list(rows))


@functools.lru_cache(maxsize=256)
def _multi_row(statement: str, n: int) -> str:
    """``statement`` (one row's) rewritten for ``n`` rows at once (SQLite)."""
    insert = _INSERT_VALUES.match(statement)
    if insert is not None:
        head, values, tail = insert.groups()
        return head + ", ".join([values] * n) + tail
    update = _UPDATE_BY_KEY.match(statement)
    if update is not None:
        table, assignments, key = update.groups()
        columns = [a.split(" = ")[0] for a in assignments.split(", ")]
        values = "(" + ", ".join(["?"] * (len(columns) + 1)) + ")"
        sets = ", ".join(f"{c} = v.column{i}" for i, c in enumerate(columns, start=1))
        return (
            f"UPDATE {table} SET {sets} FROM (VALUES {', '.join([values] * n)}) AS v "
            f"WHERE {table}.{key} = v.column{len(columns) + 1}"
        )
    raise ValueError(f"bulk() takes a one-row INSERT ... VALUES or UPDATE ... WHERE key = ?, not: {statement}")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def part_file(database: Path, part: FilePart) -> Path:
    """Where ``part`` is kept beside a SQLite database file."""
    return database.with_name(f"{database.stem}{part.suffix}{database.suffix or '.db'}")


def make_engine(url: str) -> Engine:
    """An engine for `url`, its tables made; SQLite gets WAL, a busy timeout, foreign keys, and (a file
    database) the index and the document vault in files of their own (FILE_PARTS)."""
    try:
        if url.startswith("sqlite"):
            # A pool as large as the gateway's thread pool: a connection opened and closed per request
            # costs its PRAGMAs and the WAL lock each time.
            database = make_url(url).database
            in_memory = database in (None, "", ":memory:")
            # LIFO: the connection used last is used next, its page cache still warm.
            pool = (
                {}
                if in_memory
                else {"pool_size": SQLITE_POOL_SIZE, "max_overflow": SQLITE_POOL_SIZE, "pool_use_lifo": True}
            )
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **pool)
            attach = [] if in_memory else [(p.schema, str(part_file(Path(str(database)), p))) for p in FILE_PARTS]

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_connection: Any, _record: Any) -> None:
                cur = dbapi_connection.cursor()
                for schema, path in attach:
                    cur.execute(f"ATTACH DATABASE ? AS {schema}", (path,))
                    cur.execute(f"PRAGMA {schema}.journal_mode=WAL")
                    cur.execute(f"PRAGMA {schema}.synchronous=NORMAL")
                    cur.execute(f"PRAGMA {schema}.cache_size=-{PART_CACHE_KIB}")
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
                cur.close()

            if attach:
                _PARTS_APART.add(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
        create_tables(engine)
        statements = _APPEND_ONLY_SQLITE if url.startswith("sqlite") else _APPEND_ONLY_POSTGRES
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    except SQLAlchemyError as exc:
        raise StoreError(f"database at {_redact(url)} cannot be opened: {exc}") from exc
    return engine


def create_tables(engine: Engine) -> None:
    """Make whatever tables and indexes of ``metadata`` are missing (on SQLite, each part's in its own file),
    moving a part's tables out of the main file where an older layout left them there, and dropping the
    indexes it retired (RETIRED_INDEXES)."""
    if engine not in _PARTS_APART:
        metadata.create_all(engine)
        _update_indexes(engine, metadata.sorted_tables)
        return
    apart = {t for p in FILE_PARTS for t in p.tables}
    in_main = [t for t in metadata.sorted_tables if t not in apart]
    metadata.create_all(engine, tables=in_main)
    _update_indexes(engine, in_main)
    for part in FILE_PARTS:
        in_part = engine.execution_options(schema_translate_map={None: part.schema})
        metadata.create_all(in_part, tables=list(part.tables))
        _move_out_of_main(engine, part)
        _update_indexes(in_part, part.tables, schema=part.schema)


def _update_indexes(engine: Engine, tables: Sequence[Table], *, schema: str | None = None) -> None:
    """An existing table gets the indexes added to its definition since it was made (create_all makes a
    table's indexes only with the table) and loses the retired ones."""
    with engine.begin() as conn:
        for table in tables:
            for index in table.indexes:
                conn.execute(CreateIndex(index, if_not_exists=True))
            for name in RETIRED_INDEXES.get(table.name, ()):
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {schema + '.' if schema else ''}{name}")


def _move_out_of_main(engine: Engine, part: FilePart) -> None:
    """Tables of ``part`` still in the main file (made before the part had a file of its own): a derived
    part's are dropped (the indexer rebuilds them from the chain), the others' rows are copied over and
    then dropped. Copy and drop are separate commits (SQLite in WAL mode commits each file on its own);
    a crash between them leaves rows in both files, and the next start copies again (a row already over
    is left as it is) and drops."""
    names = [t.name for t in part.tables]
    with engine.connect() as conn:
        found = (
            conn.exec_driver_sql(
                f"SELECT name FROM main.sqlite_master WHERE type = 'table' AND name IN ({', '.join('?' * len(names))})",
                tuple(names),
            )
            .scalars()
            .all()
        )
    if not found:
        return
    stale = [t for t in part.tables if t.name in found]
    if part.derived:
        log.warning("moving %s to its own file: it is rebuilt from the chain", ", ".join(found))
    else:
        log.warning("moving %s to its own file (%s), rows and all", ", ".join(found), part.schema)
        with writing(engine) as conn:
            for t in stale:
                columns = ", ".join(c.name for c in t.columns)
                conn.exec_driver_sql(
                    f"INSERT OR IGNORE INTO {part.schema}.{t.name} ({columns}) SELECT {columns} FROM main.{t.name}"
                )
    with writing(engine) as conn:
        for t in reversed(stale):
            conn.exec_driver_sql(f"DROP TABLE main.{t.name}")


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
