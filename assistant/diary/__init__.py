"""The cramp diary, kept on the device.

- :mod:`~assistant.diary.store` — the SQLite diary: episodes, answers, weekly counts.
- :mod:`~assistant.diary.keeper` — records that cannot be written now are kept and
  written later; a failing diary never interrupts relief.
"""
