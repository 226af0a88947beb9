"""altmesh: end-to-end encrypted streams to `.alt` services through Noise relays."""

__version__ = "0.1.0"
