"""Experiment: how the noise before a command (the endpointer's pre-roll) affects PocketSphinx.

Each held-out sentence (bench/command_accuracy.py plan, every voice) is placed in a stream
of kitchen noise (1.5 s before, 1 s after, mixed at the SNR over the speech) and fed 20 ms
at a time through :class:`assistant.speech_in.vad.Endpointer` into the recognizer, as assistant/runners/live.py
does. Variants change the pre-roll length or how the recognizer starts an utterance.
"alone" rows decode the speech with exactly LEAD seconds of noise before it (no endpointer).

    python -m bench.preroll_experiment --per-intent 2 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.command_accuracy import VOICES, Utterance, plan
from bench.common import RATE, RESULTS, ROOT, seed_of, speech

CHUNK = int(RATE * 0.02)
BEFORE = 1.5
AFTER = 1.0

_W: dict[str, Any] = {}


def _init() -> None:
    from assistant.conversation.intents import IntentSet
    from assistant.speech_in.recognizers import create_recognizer

    _W["intents"] = IntentSet.load(ROOT / "prompts" / "intents.yaml")
    _W["rec"] = create_recognizer(_W["intents"], "pocketsphinx")


def stream(utt: Utterance, before: float, after: float = AFTER) -> tuple[np.ndarray, int]:
    """Noise ``before`` s + speech + noise ``after`` s (int16), and the speech start sample."""
    from assistant.testing.speechgen import mix

    rng = np.random.default_rng(seed_of(utt.text, utt.voice, utt.noise, utt.snr_db, "preroll"))
    s = speech(utt.text, utt.voice)
    lead = int(RATE * before)
    audio = np.concatenate([np.zeros(lead, np.int16), s, np.zeros(int(RATE * after), np.int16)])
    if utt.noise is None:
        out = audio.astype(np.float64) + rng.normal(0, 2.0, len(audio))  # a quiet room, as simulate.py
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16), lead
    return mix(audio, utt.noise, float(utt.snr_db or 0.0), rng), lead


def _decode_vad(utt: Utterance, preroll: float, fix: str) -> tuple[str, bool, int]:
    from assistant.conversation.dialog import CONTEXTS
    from assistant.speech_in.recognizers import understand
    from assistant.speech_in.vad import Endpointer, VadSettings

    rec, intents = _W["rec"], _W["intents"]
    only = list(CONTEXTS[utt.context])
    audio, _ = stream(utt, BEFORE)
    extra = {}
    if fix.startswith("rise"):  # rise<dB>/<margin s>: pre-roll trimmed to the rise of the first word
        db, _, margin = fix[4:].partition("/")
        extra = {"preroll_rise_db": float(db), "preroll_margin": float(margin or 0)}
    ep = Endpointer(RATE, VadSettings(preroll=preroll, **extra))
    heard, right, n, active = "", False, 0, False
    history: list[np.ndarray] = []
    for i in range(0, len(audio) - CHUNK + 1, CHUNK):
        block = audio[i:i + CHUNK]
        seg = ep.process(block)
        if seg.started:
            rec.set_context(only)
            start(rec, fix, history, len(seg.audio))
            active = True
        if active:
            blocks = list(seg.audio)
            if seg.started and fix.startswith("attn"):
                pre = max(0, len(blocks) - ep.s.start_frames)
                gain = 10 ** (-float(fix[4:]) / 20)
                blocks = [(b * gain).astype(np.int16) if k < pre else b for k, b in enumerate(blocks)]
            if seg.started:
                utt_blocks, pre_n = [], max(0, len(blocks) - ep.s.start_frames)
            utt_blocks.extend(blocks)
            if fix != "batch":
                for b in blocks:
                    rec.accept_audio(b.tobytes())
        if seg.ended and active:
            active = False
            n += 1
            if fix == "batch":  # the whole utterance at once: CMN over the utterance, as the model was trained
                rec._decoder.process_raw(np.concatenate(utt_blocks).tobytes(), False, True)
            t = rec.end_utterance()
            m = understand(intents, t, only)
            if m is None and fix.startswith("retry") and pre_n:
                keep_n = int(float(fix[5:] or 0) / 0.02)
                rec.start_utterance()
                for b in utt_blocks[max(0, pre_n - keep_n):]:
                    rec.accept_audio(b.tobytes())
                t = rec.end_utterance()
                m = understand(intents, t, only)
            heard = heard + (" | " if heard else "") + t.text
            right = right or (m is not None and m.intent == utt.intent and dict(m.slots) == utt.slots)
        history.append(block)
        history = history[-100:]  # 2 s of background kept, as the loop could
    if active:
        t = rec.end_utterance()
        m = understand(intents, t, only)
        heard += " |end " + t.text
        right = right or (m is not None and m.intent == utt.intent and dict(m.slots) == utt.slots)
        n += 1
    return heard, right, n


def start(rec: Any, fix: str, history: list[np.ndarray], fed: int) -> None:
    """Start an utterance the way variant ``fix`` does."""
    dec = rec._decoder
    if fix in ("none", "nonoise") or fix.startswith(("dec=", "attn", "retry", "batch", "rise")):
        rec.start_utterance()
        return
    if fix.startswith("warm"):  # noise estimate warmed on the background before the pre-roll
        secs = float(fix[4:] or 1.0)
        k = int(secs / 0.02)
        bg = history[-(k + fed):-fed] if len(history) > fed else []
        rec.start_utterance()
        if bg:
            rec.accept_audio(np.concatenate(bg).tobytes())
            dec.end_utt()
            dec.start_utt()  # no reinit_feat: the noise estimate stays
            dec.set_cmn(rec._cmn0)
        return
    raise ValueError(fix)


def _decode_alone(utt: Utterance, lead: float) -> tuple[str, bool, int]:
    from assistant.conversation.dialog import CONTEXTS
    from assistant.speech_in.recognizers import recognize_pcm

    audio, at = stream(utt, lead, 0.3)
    t, m = recognize_pcm(_W["rec"], audio.tobytes(), list(CONTEXTS[utt.context]), _W["intents"])
    return t.text, m is not None and m.intent == utt.intent and dict(m.slots) == utt.slots, 1


def _num(v: str) -> Any:
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v, v)


def _job(args: tuple[Utterance, list[tuple[str, float, str]]]) -> list[dict[str, Any]]:
    utt, variants = args
    out = []
    for path, x, fix in variants:
        keep = _W["rec"]
        if fix.startswith("dec=") or fix == "nonoise":
            if fix not in _W:
                from assistant.speech_in.recognizers import PocketSphinxRecognizer

                opts = {} if fix == "nonoise" else {
                    k: _num(v) for k, v in (kv.split("~") for kv in fix[4:].split("/"))}
                _W[fix] = PocketSphinxRecognizer(_W["intents"], **opts)
                if fix == "nonoise":  # the model's feat.params overrides the keyword; reinit_feat keeps this
                    _W[fix]._decoder.config["remove_noise"] = False
            _W["rec"] = _W[fix]
        try:
            heard, right, n = _decode_alone(utt, x) if path == "alone" else _decode_vad(utt, x, fix)
        finally:
            _W["rec"] = keep
        out.append({"path": path, "x": x, "fix": fix, "snr": utt.snr_db, "noise": utt.noise, "voice": utt.voice,
                    "context": utt.context, "text": utt.text, "heard": heard, "right": right, "n": n})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-intent", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--snrs", default="clean,20,12")
    parser.add_argument("--variants", default="alone:0,alone:0.1,alone:0.2,alone:0.3,"
                        "vad:0:none,vad:0.1:none,vad:0.2:none,vad:0.3:none")
    parser.add_argument("--voices", default=",".join(VOICES))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "preroll-experiment.json")
    a = parser.parse_args()
    from assistant.conversation.intents import IntentSet

    intent_set = IntentSet.load(ROOT / "prompts" / "intents.yaml")
    snrs = [float(s) for s in a.snrs.split(",") if s != "clean"]
    kw = {"seed": a.seed} if a.seed is not None else {}
    utts, _ = plan(intent_set, a.per_intent, a.voices.split(","), snrs, **kw)
    if "clean" not in a.snrs.split(","):
        utts = [u for u in utts if u.snr_db is not None]
    variants = []
    for v in a.variants.split(","):
        parts = v.split(":")
        variants.append((parts[0], float(parts[1]), parts[2] if len(parts) > 2 else "none"))
    for u in utts:
        speech(u.text, u.voice)
    t0 = time.monotonic()
    jobs = [(u, variants) for u in utts]
    if a.jobs <= 1:
        _init()
        rows = [r for j in jobs for r in _job(j)]
    else:
        with ProcessPoolExecutor(a.jobs, initializer=_init) as ex:
            rows = [r for res in ex.map(_job, jobs, chunksize=4) for r in res]
    a.out.write_text(json.dumps(rows, indent=0))
    conds = ["clean" if s is None else f"{s:g} dB" for s in dict.fromkeys(u.snr_db for u in utts)]
    print(f"{len(utts)} utterances, {time.monotonic() - t0:.0f} s")
    print("| variant | " + " | ".join(conds) + " |")
    for path, x, fix in variants:
        cells = []
        for c in conds:
            g = [r for r in rows if (r["path"], r["x"], r["fix"]) == (path, x, fix)
                 and ("clean" if r["snr"] is None else f"{r['snr']:g} dB") == c]
            cells.append(f"{sum(r['right'] for r in g)}/{len(g)}")
        print(f"| {path} {x:g} {fix} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
