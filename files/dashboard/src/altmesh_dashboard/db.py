"""Engine and per-request session. `get_session()` (or the `db_session` proxy) gives the session
of the current app context; it is closed when the context ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config as AlembicConfig
from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.local import LocalProxy

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
EXTENSION_KEY = "altmesh_db"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers run beside the single writer; foreign keys are off by default.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def database_url(app: Flask) -> str:
    url = str(app.config["DATABASE_URL"])
    if url:
        return url
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(app.instance_path) / 'dashboard.sqlite3'}"


def init_db(app: Flask) -> None:
    engine = make_engine(database_url(app))
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


def upgrade_database(app: Flask, revision: str = "head") -> None:
    """Apply the Alembic migrations shipped in this package."""
    alembic_config = AlembicConfig()
    alembic_config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine_of(app).begin() as connection:
        alembic_config.attributes["connection"] = connection
        command.upgrade(alembic_config, revision)
