"""altmesh-dashboard: the operators' view of an altmesh network."""

__version__ = "0.1.0"

from altmesh_dashboard.app import create_app

__all__ = ["__version__", "create_app"]
