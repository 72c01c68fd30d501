"""Speech out: real pyttsx3 rendering, real playback through PulseAudio, cut-off on stop()."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pytest

from assistant.conversation.timers import FakeClock
from assistant.speech_in.wav import resample
from assistant.speech_out.render import CachedRenderer, Rendered, VoiceSettings
from assistant.speech_out.speakers import DeviceSpeaker
from assistant.speech_out.tts import EspeakRenderer, looks_cut_short
from assistant.testing.fakes import ClockSpeaker

LINE = "Sit down, and gently pull your toes back toward your shin. Keep the knee straight."


@pytest.fixture(scope="module")
def renderer() -> CachedRenderer:
    return CachedRenderer(EspeakRenderer(VoiceSettings(rate=165)), max_items=2)


def test_renders_speech_repeatedly_and_caches(renderer: CachedRenderer) -> None:
    first = renderer.render(LINE)
    assert first.rate == 22050 and 3.0 < first.duration < 10.0
    assert np.abs(first.samples).max() > 5000  # real speech, not silence
    for i in range(5):  # runAndWait must not hang on repeated calls
        assert renderer.render(f"{i} seconds left.").duration > 0.3
    assert renderer.misses == 6
    assert renderer.render("4 seconds left.") is renderer.render("4 seconds left.")
    assert renderer.hits == 2
    assert len(renderer._cache) == 2  # LRU bound


def test_blank_text_does_not_hang(renderer: CachedRenderer) -> None:
    assert renderer.render("   ").duration == 0.0


def test_a_whole_line_passes_and_one_cut_short_is_caught(renderer: CachedRenderer) -> None:
    whole = renderer.render(LINE)
    assert not looks_cut_short(whole, 165)
    assert not looks_cut_short(renderer.render("Five."), 165)
    n = len(whole.samples)
    assert looks_cut_short(Rendered(LINE, whole.samples[: int(n * 0.6)], whole.rate), 165)  # stops mid-word
    assert looks_cut_short(Rendered(LINE, whole.samples[n // 2:], whole.rate), 165)  # half of it missing


def test_a_line_pyttsx3_cut_short_is_rendered_again(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """The pyttsx3 race that saved 4.4 of a 7.5 s line once in CI, injected."""
    caplog.set_level(logging.INFO, logger="assistant.speech_out.tts")
    espeak = EspeakRenderer(VoiceSettings(rate=165))
    real = espeak._render_once
    cuts = iter([True])
    calls = []

    def flaky(text: str) -> Rendered:
        calls.append(text)
        out = real(text)
        if next(cuts, False):
            return Rendered(text, out.samples[: len(out.samples) * 6 // 10], out.rate)
        return out

    monkeypatch.setattr(espeak, "_render_once", flaky)
    line = espeak.render(LINE)
    assert not looks_cut_short(line, 165) and line.duration > 4.0
    assert len(calls) == 2 and "cut-short line" in caplog.text


def test_rate_setting_changes_speed() -> None:
    """Config rate reaches espeak from a cold start (where pyttsx3's own rate setting was lost under load)."""
    import subprocess
    import sys

    code = ("import sys; from assistant.speech_out.tts import EspeakRenderer, VoiceSettings; "
            f"print(EspeakRenderer(VoiceSettings(voice='en-us', rate=int(sys.argv[1]))).render({LINE!r}).duration)")
    slow, fast = (float(subprocess.run([sys.executable, "-c", code, str(rate)], capture_output=True, text=True,
                                       check=True).stdout.split()[-1]) for rate in (120, 240))
    assert slow > 1.5 * fast


def test_each_renderer_speaks_at_its_own_rate_in_one_process() -> None:
    """Rate travels with each line, so two settings in one process both hold, in any order."""
    slow, fast = EspeakRenderer(VoiceSettings(rate=120)), EspeakRenderer(VoiceSettings(rate=240))
    durations = [r.render(LINE).duration for r in (fast, slow, fast, slow)]
    assert min(durations[1], durations[3]) > 1.5 * max(durations[0], durations[2])


def test_resample_keeps_duration() -> None:
    x = np.zeros(22050, np.int16)
    assert abs(len(resample(x, 22050, 44100)) - 44100) < 50


def _active(samples: np.ndarray, times: np.ndarray, after: float) -> np.ndarray:
    """Arrival times of the 10 ms blocks that carry sound, after ``after``."""
    block = 160
    n = len(samples) // block
    loud = np.abs(samples[:n * block].reshape(n, block)).max(axis=1) > 500
    t = times[:n * block:block]
    return t[loud & (t > after)]


@pytest.mark.audio
def test_playback_reaches_speaker_and_stop_cuts_it(pulse: Any, renderer: CachedRenderer) -> None:
    """Plays a long line, stops it mid-sentence; the speaker must fall silent at once.

    The cut-off time is a measurement (reported in the assertion message); the bound is
    generous so a loaded CI machine does not flake. bench/latency.py reports the figure.
    """
    speaker = DeviceSpeaker(renderer, "pulse")
    rec = pulse.record("speaker.monitor")
    try:
        rendered = renderer.render(LINE)
        time.sleep(0.3)  # let the recorder connect (not waiting for the code under test)
        t_play = time.monotonic()
        speaker.play(rendered)
        assert speaker.speaking and speaker.current_text == LINE
        deadline = t_play + 5
        while time.monotonic() < deadline and len(_active(*rec.samples(), t_play)) < 50:
            time.sleep(0.01)  # poll the real device until half a second of speech came out
        t_stop = time.monotonic()
        speaker.stop()
        while speaker.speaking and time.monotonic() < t_stop + 2:
            time.sleep(0.005)
        t_quiet = time.monotonic()
        time.sleep(0.5)
        audio, times = rec.stop()
    finally:
        speaker.close()
    heard = _active(audio, times, t_play)
    assert len(heard) >= 50, "the line never reached the speaker"
    start_latency = heard[0] - t_play
    cut = heard.max() - t_stop
    assert start_latency < 2.0, f"first sample after {start_latency * 1000:.0f} ms"
    assert cut < 0.25, f"speech went on {cut * 1000:.0f} ms after stop()"
    assert t_quiet - t_stop < 0.2, "speaking flag did not clear"
    assert heard.max() < t_play + rendered.duration - 0.5, "the line was not cut short"


def test_clock_speaker_is_busy_for_the_real_line_on_its_clock(renderer: CachedRenderer) -> None:
    """The one clock-driven speaker: the real voice, no sound card, time from the run's clock."""
    clock = FakeClock(10.0)
    speaker = ClockSpeaker(renderer, clock, record=True, history=True)
    duration = speaker.say(LINE)
    assert duration == pytest.approx(renderer.render(LINE).duration, abs=0.01)
    assert speaker.speaking and speaker.current_text == LINE
    queued = speaker.say("Five.")  # said while busy: starts when the first line ends
    assert speaker.said[1][0] == pytest.approx(10.0 + duration)
    assert speaker.busy_until == pytest.approx(10.0 + duration + queued)
    clock.advance(1.0)
    speaker.stop()  # barge-in: the rest of the recording is silent from now on
    assert not speaker.speaking and speaker.current_text is None
    audio = speaker.samples(clock.now()).astype(np.int32)
    rate = speaker.rate
    assert np.abs(audio[int(10.2 * rate):int(10.9 * rate)]).max() > 1000  # the line up to the stop
    assert len(audio) == int(11.0 * rate)  # nothing kept after it
    times, levels = speaker.history.window(10.0, 11.0)
    assert len(times) > 50 and levels.max() > 100  # loudness for the echo check


def test_prewarm_caches_lines_and_survives_a_failing_one(renderer: CachedRenderer) -> None:
    class Breaks:
        def render(self, text: str) -> Rendered:
            if text == "broken":
                raise RuntimeError("voice failed")
            return renderer.render(text)

    cache = CachedRenderer(Breaks())
    assert cache.prewarm(["Ten.", "broken", "Release."]) == 2
    assert cache.misses == 2
    cache.render("Ten.")
    assert cache.hits == 1
