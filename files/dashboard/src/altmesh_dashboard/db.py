"""Engine and per-request session. `get_session()` (or the `db_session` proxy) gives the session
of the current app context; it is closed when the context ends."""

from __future__ import annotations

import threading
import time
import weakref
from contextlib import suppress
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config as AlembicConfig
from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.local import LocalProxy

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
EXTENSION_KEY = "altmesh_db"
HEALTH_WRITE_EVERY_SECONDS = 5.0
HEALTH_WRITE_TIMEOUT_MS = 2000  # a write stuck behind a lock counts as "not writable" after this
SQLITE_BUSY_TIMEOUT_MS = 30000  # how long a SQLite write waits for another writer's lock


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """The app's engine. Each thread of a gunicorn worker holds one pooled connection at a time
    (a nested app context, as /metrics opens, may briefly take a second): `pool_size` stay open
    and as many again may be opened for a peak, so a process never holds more than twice
    `pool_size` (DATABASE_POOL_SIZE; the packaged gunicorn config raises it to its threads)."""
    limits = {"pool_size": pool_size, "max_overflow": pool_size}
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **limits
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers run beside the single writer; foreign keys are off by default.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **limits)


def database_url(app: Flask) -> str:
    url = str(app.config["DATABASE_URL"])
    if url:
        return url
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(app.instance_path) / 'dashboard.sqlite3'}"


def init_db(app: Flask) -> None:
    engine = make_engine(database_url(app), app.config["DATABASE_POOL_SIZE"])
    app.extensions[EXTENSION_KEY] = sessionmaker(bind=engine, expire_on_commit=False)

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()


def engine_of(app: Flask) -> Engine:
    factory = cast(sessionmaker[Session], app.extensions[EXTENSION_KEY])
    return cast(Engine, factory.kw["bind"])


def get_session() -> Session:
    """The database session of the current app context (request, CLI command or test)."""
    if "db_session" not in g:
        factory = cast(sessionmaker[Session], current_app.extensions[EXTENSION_KEY])
        g.db_session = factory()
    return cast(Session, g.db_session)


db_session: Session = cast(Session, LocalProxy(get_session))


def first_line(error: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's appended SQL and help link."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


def shown_url(url: str) -> str:
    """A database URL fit for a message: its password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(the configured DATABASE_URL)"


def upgrade_database(app: Flask, revision: str = "head") -> None:
    """Apply the Alembic migrations shipped in this package. An unreachable database is a
    StartupError naming it (password hidden) and the reason, not a traceback."""
    migrate_database(app, revision)


def migrate_database(app: Flask, revision: str, *, downgrade: bool = False) -> None:
    """Migrate to `revision` (up, or down with `downgrade`), in one transaction.

    On SQLite, Alembic changes a table by copying it to a new one and dropping the old: with
    foreign keys enforced, dropping `relays` would cascade and delete every heartbeat, link and
    security event. So SQLite migrates with foreign keys off (a PRAGMA that only takes effect
    outside a transaction) and checks them all before committing; they are on again after."""
    from altmesh_dashboard.config import StartupError

    alembic_config = AlembicConfig()
    alembic_config.set_main_option("script_location", str(MIGRATIONS_DIR))
    run = command.downgrade if downgrade else command.upgrade
    try:
        with engine_of(app).connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                connection.commit()  # ends SQLAlchemy's autobegun transaction (no DML ran)
            try:
                with connection.begin():
                    alembic_config.attributes["connection"] = connection
                    run(alembic_config, revision)
                    if sqlite:
                        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                        if broken:
                            raise RuntimeError(
                                f"migrating to {revision} would break foreign keys: {broken[:5]}"
                            )
            finally:
                if sqlite:
                    connection.rollback()  # nothing to undo after a commit; after a failure,
                    connection.exec_driver_sql("PRAGMA foreign_keys=ON")  # outside it
                    connection.commit()
    except DBAPIError as error:
        raise StartupError(
            f"cannot use the database {shown_url(database_url(app))}: {first_line(error)}; "
            "check DATABASE_URL and that the database server runs and accepts this host"
        ) from None


class _WriteCheck:
    """When this process last saw the database take a write, per engine, and a lock so that
    concurrent /health calls (gunicorn threads) make one probe write, not one each."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last_ok: float | None = None


_write_checks: weakref.WeakKeyDictionary[Engine, _WriteCheck] = weakref.WeakKeyDictionary()
_write_checks_lock = threading.Lock()


def _write_check_of(engine: Engine) -> _WriteCheck:
    check = _write_checks.get(engine)
    if check is None:
        with _write_checks_lock:
            check = _write_checks.setdefault(engine, _WriteCheck())
    return check


def database_problem(engine: Engine) -> tuple[str, str] | None:
    """None when the database answers a read now and took a write within the last
    HEALTH_WRITE_EVERY_SECONDS in this process (else a write is made now), otherwise which
    ("unreachable", "not writable") and the database's reason.

    On the driver's own connection, not an ORM session: /health is called all the time, and
    opening, beginning and closing a session cost several times the query (a few µs)."""
    try:
        connection = engine.raw_connection()
    except Exception as error:
        return "unreachable", first_line(error)
    try:
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            cursor.close()
        except Exception as error:
            return "unreachable", first_line(error)
        problem = _write_if_due(engine, connection)
        return ("not writable", problem) if problem is not None else None
    finally:
        connection.close()  # back to the pool, rolled back


def _write_if_due(engine: Engine, connection: Any) -> str | None:
    check = _write_check_of(engine)
    if check.last_ok is not None and time.monotonic() - check.last_ok < HEALTH_WRITE_EVERY_SECONDS:
        return None
    with check.lock:  # one probe write at a time; the others then see its result
        started = time.monotonic()
        last_ok = check.last_ok
        if last_ok is not None and started - last_ok < HEALTH_WRITE_EVERY_SECONDS:
            return None
        problem = _probe_write(connection, engine.dialect.name == "sqlite")
        check.last_ok = started if problem is None else None
        return problem


# The probe's statements in each driver's parameter style (sqlite3: ?, psycopg: %s).
_PROBE_SQL = {
    "sqlite": (
        "UPDATE health_probe SET written_at = ? WHERE id = 1",
        "INSERT INTO health_probe (id, written_at) VALUES (1, ?)",
    ),
    "postgresql": (
        "UPDATE health_probe SET written_at = %s WHERE id = 1",
        "INSERT INTO health_probe (id, written_at) VALUES (1, %s)",
    ),
}


def _probe_write(connection: Any, sqlite: bool) -> str | None:
    """Rewrite the one row of `health_probe` and commit, with a short lock timeout so that a
    stuck writer cannot hang /health; the reason when that fails."""
    cursor = connection.cursor()
    try:
        connection.rollback()  # the SELECT's transaction (PostgreSQL), so SET LOCAL is ours
        if sqlite:
            cursor.execute(f"PRAGMA busy_timeout={HEALTH_WRITE_TIMEOUT_MS}")
        else:
            cursor.execute(f"SET LOCAL lock_timeout = {HEALTH_WRITE_TIMEOUT_MS}")
            cursor.execute(f"SET LOCAL statement_timeout = {HEALTH_WRITE_TIMEOUT_MS}")
        try:
            update, insert = _PROBE_SQL["sqlite" if sqlite else "postgresql"]
            cursor.execute(update, (time.time(),))
            if cursor.rowcount == 0:
                cursor.execute(insert, (time.time(),))
            connection.commit()
        finally:
            if sqlite:
                cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    except Exception as error:
        with suppress(Exception):
            connection.rollback()
        return first_line(error)
    finally:
        cursor.close()
    return None
