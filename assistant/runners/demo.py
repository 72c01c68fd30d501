"""``cramp-coach demo``: hear a whole session with no microphone.

The person's side is synthesized (the Piper voice when installed, else espeak-ng),
the conversation runs through ``simulate`` (real recognizer, real voice) with short
holds, and the result — both voices — is played on the speaker, or written with
``--out`` when there is none.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

# The person's side of the built-in session: (what they say, or a ?state to wait for).
SCRIPT = ("my left foot is cramping", "?checkin", "still cramping", "?checkin", "better", "?offer", "no")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="write the session to this WAV instead of playing it")
    parser.add_argument("--hold-seconds", type=int, default=10, help="length of each stretch (default 10)")
    parser.add_argument("--log", type=Path, help="also write the JSON Lines event log")


def run(args: argparse.Namespace) -> int:
    from assistant.runners.simulate import run as simulate_run
    from assistant.speech_in.wav import write_wav
    from assistant.speech_out.tts import piper_available
    from assistant.testing.speechgen import VOICES, synthesize

    voice = VOICES["joe"] if piper_available() else VOICES["espeak-us-m3"]
    with tempfile.TemporaryDirectory(prefix="cramp-coach-demo-") as tmp:
        turns = []
        for i, step in enumerate(SCRIPT):
            if step.startswith("?"):
                turns.append(step)
                continue
            path = Path(tmp) / f"turn{i}.wav"
            write_wav(path, synthesize(step, voice))
            turns.append(str(path))
        out = args.out or Path(tmp) / "demo.wav"
        sim_args = argparse.Namespace(**{**vars(args), "turns": turns, "out": out, "log": args.log,
                                         "realtime": False, "with_user": True, "max_seconds": 900.0,
                                         "hold_seconds": args.hold_seconds, "diary": False})
        simulate_run(sim_args)
        if args.out:
            return 0
        return _play(out)


def _play(path: Path) -> int:
    from assistant.speech_in.wav import read_wav_native

    try:
        import sounddevice as sd

        audio, rate = read_wav_native(path)
        print(f"playing {len(audio) / rate:.0f} s ... (Ctrl-C stops)")
        sd.play(audio, rate)
        sd.wait()
    except Exception as exc:  # noqa: BLE001 - no speaker: say how to still hear it
        from assistant.errors import UserFacingError

        raise UserFacingError(f"cannot play the demo ({str(exc).splitlines()[0]}); "
                              "write it to a file instead: cramp-coach demo --out demo.wav") from None
    return 0
