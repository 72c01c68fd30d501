"""Test helpers shipped with the package (used by tests/, bench/ and ``simulate``).

- :mod:`~assistant.testing.fakes` — fakes for time and faults only: a microphone that
  can be unplugged, the one clock-driven speaker (real voice, no sound card).
- :mod:`~assistant.testing.speechgen` — reproducible test speech: the vocabulary spoken
  by several voices, mixed with synthesized kitchen noise.
"""
