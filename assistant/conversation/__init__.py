"""The conversation: what the coach understands, decides and says, with no devices.

- :mod:`~assistant.conversation.events` — the events into the core, the actions out of
  it and every event-log row, each with its wire name.
- :mod:`~assistant.conversation.dialog` — the pure, synchronous dialog core on an
  injected clock: events in, actions out.
- :mod:`~assistant.conversation.timers` — clocks and the absolute hold schedule behind
  spoken countdowns.
- :mod:`~assistant.conversation.intents` — typed or recognized text to intent and slots
  (hassil templates).
- :mod:`~assistant.conversation.content` — everything the coach says, loaded from
  ``prompts/`` and validated at start-up.
- :mod:`~assistant.conversation.datafile` — YAML that remembers file and line, for
  one-line error messages.
"""
