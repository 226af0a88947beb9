"""Command line: `flask --app altmesh_dashboard users create|list|set-password|set-role`,
`tokens create [--service NAME]|list|revoke`, `relays check-liveness`, `db upgrade`. Secrets are
read from stdin or a prompt, never from arguments (they would show in `ps` and shell history).
An unreachable database is a message and exit status 3, not a traceback."""

from __future__ import annotations

import functools
import getpass
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from altmesh_dashboard.audit import record_audit
from altmesh_dashboard.auth.passwords import hash_password, password_problem
from altmesh_dashboard.config import StartupError, dns_is_configured
from altmesh_dashboard.db import database_url, first_line, get_session, shown_url, upgrade_database
from altmesh_dashboard.models import ROLES, ApiToken, User
from altmesh_dashboard.payloads import PayloadError, relay_name, service_name
from altmesh_dashboard.tokens import create_service_token, create_token, revoke_token

users = AppGroup("users", help="Manage dashboard users.")
tokens = AppGroup("tokens", help="Manage relay and service API tokens.")
relays = AppGroup("relays", help="Relay maintenance.")
database = AppGroup("db", help="Manage the database schema.")

C = TypeVar("C", bound=Callable[..., Any])


def _database_errors(command: C) -> C:
    """A database that cannot be reached is a one-line message and exit status 3."""

    @functools.wraps(command)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DBAPIError as error:
            url = shown_url(database_url(current_app._get_current_object()))  # type: ignore[attr-defined]
            raise StartupError(f"cannot use the database {url}: {first_line(error)}") from None

    wrapped._altmesh_database_errors = True  # type: ignore[attr-defined]
    return wrapped  # type: ignore[return-value]


def _cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password)
    if problem:
        raise click.ClickException(problem)
    return password


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="read the password from stdin (Ansible)")
@click.option("--exists-ok", is_flag=True, help="succeed without change if the user exists")
def create_user(username: str, role: str, password_stdin: bool, exists_ok: bool) -> None:
    """Create a user (e.g. the first admin)."""
    if not 1 <= len(username) <= 64 or not username.isprintable() or username.strip() != username:
        raise click.ClickException("username must be 1 to 64 printable characters")
    db = get_session()
    existing = db.scalar(select(User).where(User.username == username))
    if existing is not None:
        if exists_ok:
            click.echo(f"user {username} exists (role {existing.role}); unchanged")
            return
        raise click.ClickException(f"user {username} already exists")
    user = User(
        username=username, role=role, password_hash=hash_password(_read_password(password_stdin))
    )
    db.add(user)
    db.flush()
    record_audit(_cli_actor(), "user.create", f"user:{username}", None, user.audit_view())
    click.echo(f"created user {username} with role {role}")


@users.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True)
def set_password(username: str, password_stdin: bool) -> None:
    """Replace a user's password (ends their sessions)."""
    db = get_session()
    user = db.scalar(select(User).where(User.username == username))
    if user is None:
        raise click.ClickException(f"no user {username}")
    user.password_hash = hash_password(_read_password(password_stdin))
    record_audit(_cli_actor(), "user.set_password", f"user:{username}", None, None)
    click.echo(f"password of {username} changed")


@users.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
def set_role(username: str, role: str) -> None:
    db = get_session()
    user = db.scalar(select(User).where(User.username == username))
    if user is None:
        raise click.ClickException(f"no user {username}")
    before = user.audit_view()
    user.role = role
    record_audit(_cli_actor(), "user.set_role", f"user:{username}", before, user.audit_view())
    click.echo(f"{username} is now {role}")


@users.command("list")
def list_users() -> None:
    for user in get_session().scalars(select(User).order_by(User.username)):
        state = " (disabled)" if user.disabled else ""
        click.echo(f"{user.username}\t{user.role}{state}")


@tokens.command("create")
@click.argument("relay", required=False)
@click.option(
    "--service",
    "service",
    metavar="NAME",
    help="make a service token that may publish only NAME (e.g. web.alt) instead",
)
def create_relay_token(relay: str | None, service: str | None) -> None:
    """Create an API token for RELAY, or with --service NAME for a service's name. It is printed
    once, on stdout; only its hash is stored."""
    if (relay is None) == (service is None):
        raise click.UsageError("give either RELAY or --service NAME")
    db = get_session()
    if service is not None:
        try:
            name = service_name(service, str(current_app.config["DNS_ZONE"]))
        except ValueError as error:
            raise click.ClickException(f"--service: {error}") from None
        row, token = create_service_token(db, name, _cli_actor())
        record_audit(_cli_actor(), "token.create", row.subject, None, row.audit_view())
        click.echo(f"# token {row.id} for service {name}; shown once, store it now", err=True)
        click.echo(token)
        return
    assert relay is not None
    try:
        relay_name(relay, "relay")
    except PayloadError as error:
        raise click.ClickException(str(error)) from None
    row, token = create_token(db, relay, _cli_actor())
    record_audit(_cli_actor(), "token.create", row.subject, None, row.audit_view())
    click.echo(f"# token {row.id} for relay {relay}; shown once, store it now", err=True)
    click.echo(token)


@tokens.command("revoke")
@click.argument("token_id", type=int)
def revoke_relay_token(token_id: int) -> None:
    """Revoke token TOKEN_ID (see `tokens list`); the relay is refused from now on."""
    db = get_session()
    row = db.get(ApiToken, token_id)
    if row is None:
        raise click.ClickException(f"no token with id {token_id}")
    if row.revoked_at is not None:
        click.echo(f"token {token_id} was already revoked")
        return
    before = row.audit_view()
    revoke_token(db, token_id)
    record_audit(_cli_actor(), "token.revoke", row.subject, before, row.audit_view())
    click.echo(f"token {token_id} of {row.subject.replace(':', ' ', 1)} revoked")


@tokens.command("list")
def list_tokens() -> None:
    for row in get_session().scalars(select(ApiToken).order_by(ApiToken.id)):
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
        click.echo(f"{row.id}\t{row.subject}\t{state}\tlast used {used}")


@relays.command("check-liveness")
def check_liveness_command() -> None:
    """Set the SRV weight of relays that stopped reporting to 0 (run it from a timer, every
    RELAY_STALE_AFTER_SECONDS / 3 or so). Exit status 1 if a DNS update failed."""
    from altmesh_dashboard.liveness import check_liveness

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not dns_is_configured(app.config):
        click.echo("DNS is not configured: no SRV weights to keep")
        return
    result = check_liveness(app)
    for name in result.demoted:
        click.echo(f"relay {name} stopped reporting: SRV weight set to 0")
    for name, reason in result.failed.items():
        click.echo(f"relay {name}: could not set its SRV weight to 0: {reason}", err=True)
    if result.failed:
        sys.exit(1)
    if not result.demoted:
        click.echo("every relay with a weight above 0 is reporting")


@database.command("upgrade")
def upgrade() -> None:
    """Apply the packaged migrations (also done at start unless AUTO_MIGRATE is off)."""
    upgrade_database(current_app._get_current_object())  # type: ignore[attr-defined]
    click.echo("database schema is up to date")


def register_cli(app: Flask) -> None:
    for group in (users, tokens, relays, database):
        for command in group.commands.values():
            callback = command.callback
            if callback is not None and not hasattr(callback, "_altmesh_database_errors"):
                command.callback = _database_errors(callback)
        app.cli.add_command(group)
