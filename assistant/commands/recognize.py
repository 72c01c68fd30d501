"""``cramp-coach recognize``: WAV files → one JSON line each with text, intent and slots.

Other tools rely on the output format (see the brief)::

    {"file": ..., "text": ..., "intent": name-or-null, "slots": {...}, "confidence": x}

A file that cannot be read prints an error on stderr and a JSON line with ``"error"``;
the remaining files are still recognized and the exit code is 1. Each file is one
utterance, decoded and cleaned up exactly as the live coach decodes one
(:mod:`assistant.speech_in.pipeline`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


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
    from assistant.speech_in.pipeline import Decoder, UtteranceContext, decode_whole
    from assistant.speech_in.recognizers import create_recognizer
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
    decoder = Decoder(recognizer, intent_set, lambda: create_recognizer(intent_set, engine, args.model),
                      floor=args.floor)  # as the live coach decodes
    ctx = UtteranceContext(tuple(only) if only is not None else None)
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
        decoded = decode_whole(decoder, pcm, ctx)  # the file is the utterance
        for row in _drain(decoder.errors):
            failed += row["type"] == "recognizer_error"
            print(f"cramp-coach recognize: {path}: the recognizer failed ({row['error']})", file=sys.stderr)
        print(json.dumps({
            "file": str(path),
            "text": decoded.transcript.text,
            "intent": decoded.intent,
            "slots": decoded.slots,
            "confidence": round(decoded.transcript.confidence, 3),
        }), flush=True)
    return 1 if failed else 0


def _drain(q: Any) -> list[dict[str, Any]]:
    rows = []
    while not q.empty():
        rows.append(q.get_nowait())
    return rows
