"""DNS management of the zone (owned by the DNS helper; this is the placeholder it takes over)."""

from flask import Blueprint

bp = Blueprint("dns", __name__, url_prefix="/dns")
