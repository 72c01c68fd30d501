"""Runners: the session builder, turn taking, and the live, simulated and keyboard runs."""
