"""gunicorn entry point: `gunicorn altmesh_dashboard.wsgi:app`. A configuration error or an
unreachable database is printed as a message (no traceback) and stops the worker."""

from __future__ import annotations

import sys

from altmesh_dashboard.app import create_app
from altmesh_dashboard.config import StartupError

try:
    app = create_app()
except StartupError as error:
    print(f"altmesh-dashboard: {error.message}", file=sys.stderr)
    sys.exit(3)  # gunicorn's "worker failed to boot": the arbiter stops instead of retrying
