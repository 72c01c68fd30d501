"""Runners: the core wired to devices, a keyboard or recordings.

- :mod:`~assistant.runners.session` — builds a session (content, coach, diary keeper)
  and writes the JSON Lines event log.
- :mod:`~assistant.runners.turn_taking` — when the coach speaks and listens: queued
  lines, ticks, silences, barge-in and the echo gate.
- :mod:`~assistant.runners.live` — ``cramp-coach``: microphone and speaker.
- :mod:`~assistant.runners.simulate` — ``cramp-coach simulate``: recorded turns on a
  virtual clock.
- :mod:`~assistant.runners.text` — ``cramp-coach --text``: keyboard and screen.
- :mod:`~assistant.runners.demo` — ``cramp-coach demo``: a built-in session.
- :mod:`~assistant.runners.signals`, :mod:`~assistant.runners.memory` — orderly
  shutdown on SIGTERM/SIGINT; a heap that stays flat for weeks.
"""
