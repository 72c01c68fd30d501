"""``cramp-coach recognize``: WAV files → one JSON line each with text, intent and slots.

Other tools rely on the output format (see the brief)::

    {"file": ..., "text": ..., "intent": name-or-null, "slots": {...}, "confidence": x}

A file that cannot be read prints an error on stderr and a JSON line with ``"error"``;
the remaining files are still recognized and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="AUDIO.wav", help="WAV files to recognize")
    parser.add_argument("--intents", type=Path, metavar="FILE",
                        help="intent template file (default: the coach's prompts/intents.yaml)")
    parser.add_argument("--only", metavar="INTENT,...", help="restrict recognition to these intents")
    parser.add_argument("--engine", default=None, help="speech engine: auto (default), vosk, pocketsphinx or whisper")
    parser.add_argument("--model", type=Path, help="Vosk model directory (implies the Vosk engine)")
    parser.add_argument("--floor", type=float, default=None, help="confidence below which speech is rejected")
    parser.add_argument("--json", action="store_true", help="JSON Lines output (the only format; accepted)")


def run(args: argparse.Namespace) -> int:
    from assistant.conversation.intents import IntentSet
    from assistant.errors import UserFacingError
    from assistant.paths import prompts_dir
    from assistant.speech_in.recognizers import DEFAULT_FLOOR, create_recognizer, recognize_pcm
    from assistant.speech_in.wav import read_wav

    intent_set = IntentSet.load(args.intents or prompts_dir() / "intents.yaml")
    only = None
    if args.only:
        try:
            only = intent_set.check_names(n.strip() for n in args.only.split(",") if n.strip())
        except ValueError as exc:
            raise UserFacingError(str(exc)) from None
    engine = args.engine or ("vosk" if args.model else "auto")
    recognizer = create_recognizer(intent_set, engine, args.model)
    floor = DEFAULT_FLOOR if args.floor is None else args.floor
    failed = 0
    for path in args.files:
        try:
            pcm = read_wav(path).tobytes()
        except UserFacingError as exc:
            failed += 1
            print(f"cramp-coach recognize: {exc}", file=sys.stderr)
            print(json.dumps({"file": str(path), "error": str(exc), "text": "", "intent": None,
                              "slots": {}, "confidence": 0.0}), flush=True)
            continue
        transcript, match = recognize_pcm(recognizer, pcm, only, intent_set, floor)
        print(json.dumps({
            "file": str(path),
            "text": transcript.text,
            "intent": match.intent if match else None,
            "slots": dict(match.slots) if match else {},
            "confidence": round(transcript.confidence, 3),
        }), flush=True)
    return 1 if failed else 0
