"""Authentication: users with roles (viewer < operator < admin), login, and view guards."""

from altmesh_dashboard.auth.access import (
    current_user,
    login_required,
    public,
    role_required,
)
from altmesh_dashboard.auth.views import bp

__all__ = ["bp", "current_user", "login_required", "public", "role_required"]
