"""The command line (``cramp-coach``) and its subcommands.

- :mod:`~assistant.commands.cli` — the entry point: options, configuration, dispatch.
- :mod:`~assistant.commands.recognize` — WAV files to one JSON line each.
- :mod:`~assistant.commands.devices` — the audio inputs and outputs.
- :mod:`~assistant.commands.doctor` — a self-check, each problem with its fix.
- :mod:`~assistant.commands.diary` — list, summarize, export or forget the diary.
"""
