"""DNS management of the network's zone (`alt.`): view it, add / change / delete records, see the
server's status, and publish relays' records when they register (`publish`)."""

from flask import Blueprint

bp = Blueprint("dns", __name__, url_prefix="/dns")

from altmesh_dashboard.dns import views  # noqa: E402  (registers the routes on bp)

__all__ = ["bp", "views"]
