"""``cramp-coach`` command line: the live coach and its tools.

Each subcommand lives in its own module exposing ``configure(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so start-up
stays light on a Pi.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import NoReturn

from assistant import __version__
from assistant.errors import UserFacingError

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "recognize": ("assistant.commands.recognize", "recognize WAV files and print intents as JSON lines"),
    "simulate": ("assistant.runners.simulate", "run a whole conversation from recorded user turns"),
    "demo": ("assistant.runners.demo", "hear a built-in session with synthesized user turns"),
    "models": ("assistant.speech_in.models", "install, list and remove speech models"),
    "devices": ("assistant.commands.devices", "list audio input and output devices"),
    "doctor": ("assistant.commands.doctor", "check the installation and audio devices"),
    "diary": ("assistant.commands.diary", "list, summarize, export or forget the cramp diary"),
    "config": ("assistant.config", "show the effective configuration"),
}


def _add_live_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", action="store_true", help="converse on the keyboard and screen")
    parser.add_argument("--engine", help="speech engine: auto, vosk, pocketsphinx or whisper")
    parser.add_argument("--model", help="Vosk model directory")
    parser.add_argument("--input", help="microphone device name or index")
    parser.add_argument("--output", help="speaker device name or index")
    parser.add_argument("--log-events", metavar="FILE", help="write a JSON Lines event log")
    parser.add_argument("--seed", type=int, help="seed for choosing phrasings (reproducible runs)")
    parser.add_argument("--time-scale", type=_positive, metavar="X",
                        help="run the coach's clock X times faster (text mode: scripted runs, demos)")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number (e.g. 20)")
    return value


class _Parser(argparse.ArgumentParser):
    """A mistyped option is one line with the way out, like every other refusal."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("cramp-coach").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"cramp-coach: {where}{message}; see '{self.prog} --help'\n")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cramp-coach",
        description="Offline, hands-free voice coach for foot cramps.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    _add_live_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the module of the chosen command is imported; the others just get a help line.
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module_name).configure(sp)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command:
            module = importlib.import_module(SUBCOMMANDS[args.command][0])
            return int(module.run(args) or 0)
        if args.text:
            from assistant.runners.text import run_text

            return run_text(args)
        from assistant.runners.live import run_live

        return run_live(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except UserFacingError as exc:
        print(f"cramp-coach: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
