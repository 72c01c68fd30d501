"""Experiment: would an idle score-margin check cut false wake-ups, and at what cost?

PocketSphinx's posterior is ~1.0 for everything it returns, so the idle context has no
confidence to reject kitchen talk with. This measures a likelihood-ratio check instead:
when an idle utterance decodes to a command, decode the same (dithered) audio again with
a grammar of generic words only and take the per-frame difference of the two path scores
(log base 1.0001). Talk should fit the generic words about as well as the command path;
a real command should fit its path much better.

It prints the margins of (a) every false wake-up in the false-acceptance talk set and
(b) every correctly heard idle command of the held-out command set (every voice, all
four noise levels), and how many of each a threshold would keep. Nothing in the coach
uses it yet: the trade-off is the product's call (docs/speech-in.md).

    python -m bench.margin_experiment --minutes 45 --per-intent 6     # ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np

from bench.common import RESULTS, ROOT, utterances_like_live

THRESHOLDS = (8.0, 10.0, 12.0, 14.0)


def margin_recognizer(intent_set: Any) -> Any:
    """A PocketSphinx recognizer that also scores each command it hears against generic words."""
    from assistant.speech_in.grammar import GARBAGE_WORDS
    from assistant.speech_in.recognizers import PocketSphinxRecognizer, Transcript, dither

    class MarginRecognizer(PocketSphinxRecognizer):
        margin: float | None = None

        def start_utterance(self) -> None:
            super().start_utterance()
            self._audio: list[bytes] = []

        def accept_audio(self, pcm: bytes) -> None:
            if not self._in_utterance:
                self.start_utterance()
            block = dither(pcm, self._rng)
            self._audio.append(block)
            self._decoder.process_raw(block, False, False)

        def end_utterance(self) -> Transcript:
            dec = self._decoder
            hyp = None
            if self._in_utterance:
                dec.end_utt()
                hyp, frames = dec.hyp(), dec.n_frames()
                self._in_utterance = False
            self.margin = None
            if hyp is not None and hyp.hypstr:
                if "generic" not in self._searches.values():
                    words = " | ".join(w for w in GARBAGE_WORDS if self._known(w))
                    dec.add_jsgf_string("generic", f"#JSGF V1.0;\ngrammar g;\npublic <u> = ({words})+;\n")
                dec.activate_search("generic")
                self._active = "generic"
                dec.reinit_feat()
                dec.start_utt()
                dec.set_cmn(self._cmn0)
                dec.process_raw(b"".join(self._audio), False, True)
                dec.end_utt()
                generic = dec.hyp()
                self.margin = (_log(hyp.score) - _log(generic.score if generic else 0.0)) / max(1, frames)
            self._activate()
            return Transcript("", 0.0) if hyp is None or not hyp.hypstr else Transcript(hyp.hypstr, 1.0)

    return MarginRecognizer(intent_set)


def _log(score: float) -> float:
    """``hyp.score`` is ``logmath.exp`` of the path score: back to log base 1.0001."""
    return math.log(score) / math.log(1.0001) if score > 0 else -1e12


def false_wakeups(rec: Any, intent_set: Any, minutes: float) -> list[dict[str, Any]]:
    from assistant.conversation.dialog import CONTEXTS
    from assistant.speech_in.recognizers import understand
    from bench import false_accept

    idle = list(CONTEXTS["idle"])
    out = []
    for conv in false_accept.plan(minutes):
        audio, _ = false_accept.render(conv)
        rec.set_context(idle)
        for _, transcript, cut in utterances_like_live(rec, audio):
            if not cut and understand(intent_set, transcript, idle) is not None:
                out.append({"margin": rec.margin, "heard": transcript.text, "noise": conv.noise, "snr_db": conv.snr_db})
    return out


def idle_commands(rec: Any, intent_set: Any, per_intent: int) -> tuple[int, list[dict[str, Any]]]:
    from assistant.conversation.dialog import CONTEXTS
    from assistant.speech_in.recognizers import understand
    from bench import command_accuracy as ca

    idle = list(CONTEXTS["idle"])
    utts, _ = ca.plan(intent_set, per_intent, ca.VOICES, (24.0, 18.0, 12.0, 6.0))
    utts = [u for u in utts if u.context == "idle"]
    out = []
    for utt in utts:
        rec.set_context(idle)
        for _, transcript, _ in utterances_like_live(rec, ca.scene_for(utt)):
            match = understand(intent_set, transcript, idle)
            if match is not None:
                if match.intent == utt.intent and dict(match.slots) == utt.slots:
                    out.append({"margin": rec.margin, "heard": transcript.text, "noise": utt.noise,
                                "snr_db": utt.snr_db})
                break
    return len(utts), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=45.0, help="minutes of kitchen talk")
    parser.add_argument("--per-intent", type=int, default=6, help="held-out sentences per idle intent")
    args = parser.parse_args()
    from assistant.conversation.intents import IntentSet

    intent_set = IntentSet.load(ROOT / "prompts" / "intents.yaml")
    rec = margin_recognizer(intent_set)
    wakeups = false_wakeups(rec, intent_set, args.minutes)
    said, heard = idle_commands(rec, intent_set, args.per_intent)
    w = np.array([x["margin"] for x in wakeups])
    c = np.array([x["margin"] for x in heard])
    print(f"false wake-ups in {args.minutes:g} min of talk: {len(w)}; margins {sorted(np.round(w, 1).tolist())}")
    print(f"idle commands heard right: {len(c)} of {said}; margin median {np.median(c):.1f}, "
          f"5th percentile {np.percentile(c, 5):.1f}")
    for t in THRESHOLDS:
        print(f"threshold {t:4.1f}: wake-ups left {int((w >= t).sum())}/{len(w)}, "
              f"commands kept {int((c >= t).sum())}/{len(c)}")
    out = RESULTS / "margin_experiment.json"
    out.write_text(json.dumps({"minutes": args.minutes, "per_intent": args.per_intent, "idle_said": said,
                               "wakeups": wakeups, "commands": heard}, indent=1) + "\n")
    print(f"details: {out}")


if __name__ == "__main__":
    main()
