"""Cramp Coach: an offline, hands-free voice coach for foot cramps."""

__version__ = "0.1.0"
