"""The relay daemon `altmesh-relay`."""
