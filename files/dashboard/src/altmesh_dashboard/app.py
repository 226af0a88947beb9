"""The application factory."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from altmesh_dashboard import __version__
from altmesh_dashboard.auth.access import (
    current_user,
    install_login_guard,
    load_current_user,
    mark_access,
    public,
)
from altmesh_dashboard.auth.cookie_session import CookieSessionInterface
from altmesh_dashboard.config import dns_is_configured, load_config
from altmesh_dashboard.db import database_problem, engine_of, init_db, upgrade_database
from altmesh_dashboard.formatting import human_bytes
from altmesh_dashboard.metrics import FAILURES, render_metrics

log = logging.getLogger(__name__)
csrf = CSRFProtect()

core = Blueprint("core", __name__)


@core.get("/")
def home() -> ResponseReturnValue:
    return redirect(url_for("relays.index"))


@core.get("/health")
@public
def health() -> ResponseReturnValue:
    """For load balancers and systemd checks: is the app up, its database reachable, and can it
    write (a full disk, a read-only file or replica, a stuck lock)? The read is made on every
    call; the write at most every HEALTH_WRITE_EVERY_SECONDS per process while it succeeds, and
    on every call after a failure, so a recovery shows at once."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    problem = database_problem(engine_of(app))
    if problem is not None:
        state, reason = problem
        log.warning("health check: database %s: %s", state, reason)
        return jsonify(status="unhealthy", database=state), 503
    return Response(_HEALTHY, mimetype="application/json")


_HEALTHY = json.dumps({"status": "ok", "version": __version__}).encode()  # the same every time


@core.get("/metrics")
@mark_access("metrics_token")
def metrics() -> ResponseReturnValue:
    """Prometheus scrape: needs `Authorization: Bearer METRICS_TOKEN`, or a logged-in user."""
    token = current_app.config["METRICS_TOKEN"]
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    token_ok = (
        bool(token)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(presented.strip().encode(), token.encode())
    )
    if not token_ok and load_current_user() is None:
        FAILURES.labels(kind="metrics_auth").inc()
        return Response(
            "metrics need a scrape token (Authorization: Bearer ...) or a login\n",
            status=401,
            mimetype="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="altmesh-dashboard metrics"'},
        )
    return Response(
        render_metrics(current_app._get_current_object()),  # type: ignore[attr-defined]
        mimetype="text/plain; version=0.0.4",
    )


def _configure_logging(app: Flask) -> None:
    level = getattr(logging, str(app.config["LOG_LEVEL"]).upper())
    logging.getLogger("altmesh_dashboard").setLevel(level)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _install_error_pages(app: Flask) -> None:
    def wants_json() -> bool:
        return request.path.startswith("/api/")

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError) -> ResponseReturnValue:
        FAILURES.labels(kind="csrf").inc()
        message = f"The form could not be accepted: {error.description} Reload the page and retry."
        return render_template("error.html", code=400, message=message), 400

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> ResponseReturnValue:
        code = error.code or 500
        if wants_json():
            return jsonify(error=error.description), code
        return render_template("error.html", code=code, message=error.description), code

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> ResponseReturnValue:
        FAILURES.labels(kind="server_error").inc()
        log.exception("unhandled error on %s %s", request.method, request.path)
        message = "Internal error; the server log has the details."
        if wants_json():
            return jsonify(error=message), 500
        return render_template("error.html", code=500, message=message), 500


# Sent on every answer (the app's pages, its API, /health), unless a view set its own.
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; "
        "frame-ancestors 'none'; form-action 'self'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
)


def _install_security_headers(app: Flask) -> None:
    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        # One pass over the few headers a view set, instead of one per header to add.
        present = {name.lower() for name in headers.keys()}  # noqa: SIM118 - Headers, not dict
        for name, value in SECURITY_HEADERS:
            if name.lower() not in present:
                headers.add(name, value)
        if request.endpoint != "static" and "cache-control" not in present:
            headers.add("Cache-Control", "no-store")
        max_age = app.config["HSTS_MAX_AGE_SECONDS"]
        if request.is_secure and max_age:
            # Only over HTTPS (RFC 6797 §7.2: a UA ignores it over HTTP, and sending it there
            # would claim a TLS set-up that may not exist). Behind a TLS proxy, is_secure comes
            # from X-Forwarded-Proto, trusted for PROXY_COUNT hops.
            headers.setdefault("Strict-Transport-Security", f"max-age={max_age}")
        return response


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the dashboard. Settings come from defaults, the file named by
    ALTMESH_DASHBOARD_CONFIG, ALTMESH_DASHBOARD_* variables and `config`, in that order; a bad
    setting raises ConfigError naming it."""
    app = Flask("altmesh_dashboard", instance_relative_config=True)
    app.session_interface = CookieSessionInterface()
    settings = load_config(config)
    app.config.update(settings)
    app.config.update(
        SESSION_COOKIE_NAME="altmesh_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=settings["SESSION_LIFETIME_SECONDS"],
        MAX_CONTENT_LENGTH=1024 * 1024,
        WTF_CSRF_TIME_LIMIT=settings["SESSION_LIFETIME_SECONDS"],
        WTF_CSRF_SSL_STRICT=settings["SESSION_COOKIE_SECURE"],
        JSON_SORT_KEYS=False,
    )
    _configure_logging(app)
    if app.config["PROXY_COUNT"]:
        # Behind a reverse proxy the client's address (used by login throttling) and the scheme
        # come from X-Forwarded-For / -Proto, trusted for exactly that many hops.
        hops = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )
    init_db(app)
    if app.config["AUTO_MIGRATE"]:
        upgrade_database(app)
    csrf.init_app(app)

    from altmesh_dashboard import api, audit, auth, dns, events, relays, services_page
    from altmesh_dashboard.cli import register_cli

    app.register_blueprint(core)
    app.register_blueprint(auth.bp)
    app.register_blueprint(relays.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(dns.bp)
    app.register_blueprint(services_page.bp)
    csrf.exempt(api.bp)  # the relay API is token-authenticated JSON, not a browser form

    install_login_guard(app)
    _install_error_pages(app)
    _install_security_headers(app)
    register_cli(app)

    app.add_template_filter(human_bytes, "human_bytes")

    @app.context_processor
    def _template_globals() -> dict[str, Any]:
        return {
            "current_user": current_user,
            "has_endpoint": lambda name: name in app.view_functions,
            "dns_configured": dns_is_configured(app.config),
            "version": __version__,
            "page_refresh_seconds": app.config["PAGE_REFRESH_SECONDS"],
        }

    return app
