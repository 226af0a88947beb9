"""altmesh-dashboard: the operators' view of an altmesh network."""

__version__ = "0.1.0"
