"""Accuracy of a recognizer on the generated speech set (clean and 12 dB kitchen noise).

    python bench/accuracy.py [--engine pocketsphinx] [--set bench] [--audio DIR]

Renders (or reuses) the set with :mod:`assistant.testing.speechgen`, recognizes every file in
its listening context and writes ``bench/results/accuracy-<label>.md`` and ``.json``.
The functions are reusable by other benchmarks: :func:`evaluate` runs cases through a
recognizer, :func:`summarize` turns results into rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from assistant.conversation.intents import IntentSet  # noqa: E402
from assistant.speech_in.recognizers import DEFAULT_FLOOR, Recognizer, create_recognizer, recognize_pcm  # noqa: E402
from assistant.speech_in.wav import read_wav  # noqa: E402
from assistant.testing.speechgen import Case, generate  # noqa: E402

RESULTS = ROOT / "bench" / "results"


@dataclass
class Result:
    """One case and what the recognizer made of it."""

    case: Case
    text: str
    intent: str | None
    slots: dict[str, str]
    confidence: float
    decode_s: float
    audio_s: float

    @property
    def correct(self) -> bool:
        return self.intent == self.case.intent and (self.case.intent is None or self.slots == self.case.slots)


def evaluate(
    recognizer: Recognizer, cases: Iterable[Case], audio_dir: Path, intent_set: IntentSet,
    floor: float = DEFAULT_FLOOR,
) -> list[Result]:
    """Recognize each case's WAV in the case's context."""
    results = []
    for case in cases:
        pcm = read_wav(audio_dir / case.file).tobytes()
        start = time.perf_counter()
        transcript, match = recognize_pcm(recognizer, pcm, case.only, intent_set, floor)
        elapsed = time.perf_counter() - start
        results.append(Result(
            case, transcript.text, match.intent if match else None, dict(match.slots) if match else {},
            transcript.confidence, elapsed, len(pcm) / 2 / recognizer.sample_rate,
        ))
    return results


def condition(case: Case) -> str:
    return "clean" if case.noise is None else f"{case.noise} {case.snr_db:g} dB"


def summarize(results: Sequence[Result]) -> list[dict[str, object]]:
    """Per condition: command accuracy, out-of-domain rejection, false accepts, real-time factor."""
    rows = []
    for cond in dict.fromkeys(condition(r.case) for r in results):
        group = [r for r in results if condition(r.case) == cond]
        commands = [r for r in group if r.case.intent is not None]
        ood = [r for r in group if r.case.intent is None]
        rows.append({
            "condition": cond,
            "commands": len(commands),
            "correct": sum(r.correct for r in commands),
            "rejected_commands": sum(r.intent is None for r in commands),
            "wrong_intent": sum(r.intent is not None and not r.correct for r in commands),
            "out_of_domain": len(ood),
            "ood_rejected": sum(r.intent is None for r in ood),
            "rtf": sum(r.decode_s for r in group) / max(1e-9, sum(r.audio_s for r in group)),
        })
    return rows


def markdown(rows: Sequence[dict[str, object]], title: str) -> str:
    def pct(a: object, b: object) -> str:
        return f"{100 * int(a) / int(b):.1f}% ({a}/{b})" if int(b) else "–"  # type: ignore[call-overload]

    lines = [
        f"### {title}", "",
        "| condition | commands understood | not understood | wrong intent/slots | "
        "out-of-domain rejected | real-time factor |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['condition']} | {pct(r['correct'], r['commands'])} | {r['rejected_commands']} | "
            f"{r['wrong_intent']} | {pct(r['ood_rejected'], r['out_of_domain'])} | {float(r['rtf']):.2f} |"  # type: ignore[arg-type]
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", default="pocketsphinx", help="auto, vosk or pocketsphinx")
    parser.add_argument("--model", type=Path, help="Vosk model directory")
    parser.add_argument("--set", default="bench", help="speechgen set name")
    parser.add_argument("--audio", type=Path, default=ROOT / "bench" / ".cache" / "audio")
    parser.add_argument("--label", default="embedded", help="name used in the result files")
    parser.add_argument("--floor", type=float, default=DEFAULT_FLOOR)
    args = parser.parse_args(argv)

    intent_set = IntentSet.load(ROOT / "prompts" / "intents.yaml")
    _, cases = generate(args.audio, args.set, intent_set)
    recognizer = create_recognizer(intent_set, args.engine, args.model)
    results = evaluate(recognizer, cases, args.audio, intent_set, args.floor)
    rows = summarize(results)
    title = f"{recognizer.name} on the generated '{args.set}' set ({len(cases)} utterances)"
    text = markdown(rows, title)
    misses = [r for r in results if not r.correct]
    text += "\nMisses (expected → heard):\n\n" + "\n".join(
        f"- [{condition(r.case)}, {r.case.voice}] \"{r.case.text}\" ({r.case.intent}) → "
        f"\"{r.text}\" ({r.intent} {r.slots or ''})" for r in misses
    ) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"accuracy-{args.label}.md").write_text(text, encoding="utf-8")
    (RESULTS / f"accuracy-{args.label}.json").write_text(json.dumps({
        "engine": recognizer.name, "set": args.set, "floor": args.floor, "summary": rows,
        "results": [{**asdict(r.case), "heard": r.text, "got_intent": r.intent, "got_slots": r.slots,
                     "confidence": r.confidence, "decode_s": r.decode_s} for r in results],
    }, indent=1) + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
