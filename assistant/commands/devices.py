"""``cramp-coach devices``: the audio inputs and outputs sounddevice can see.

Use a number or (part of) a name from this list with ``--input`` / ``--output`` or in
the config file's ``[audio]`` section.
"""

from __future__ import annotations

import argparse
import json

from assistant.errors import UserFacingError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per device")


def run(args: argparse.Namespace) -> int:
    try:
        import sounddevice as sd

        devices = sd.query_devices()
        default_in, default_out = sd.default.device
    except Exception as exc:  # noqa: BLE001 - PortAudio missing or broken
        raise UserFacingError(f"cannot list audio devices ({exc}); install PortAudio "
                              "(apt install libportaudio2)") from None
    rows = []
    for d in devices:
        rows.append({"index": d["index"], "name": d["name"], "inputs": d["max_input_channels"],
                     "outputs": d["max_output_channels"], "rate": int(d["default_samplerate"]),
                     "default_input": d["index"] == default_in, "default_output": d["index"] == default_out})
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print("No audio devices found. Plug in a USB microphone/speaker, or use: cramp-coach --text")
        return 0
    print(f"{'#':>3}  {'in':>3} {'out':>3}  {'rate':>6}  name")
    for row in rows:
        marks = ("<" if row["default_input"] else " ") + (">" if row["default_output"] else " ")
        print(f"{row['index']:>3}{marks}{row['inputs']:>3} {row['outputs']:>3}  {row['rate']:>6}  {row['name']}")
    print("\n< default input, > default output. Choose with --input/--output NUMBER-or-NAME.")
    if not any(r["inputs"] for r in rows):
        print("No microphone: the coach cannot listen. Try: cramp-coach --text")
    return 0
