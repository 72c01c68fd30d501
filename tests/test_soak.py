"""The soak, short: an hour of use on the real live loop in virtual time (bench/soak.py).

The long run (8 virtual hours over 20+ minutes of wall time) is ``python -m bench.soak``;
its result is committed in bench/results/soak.md. Here the same code runs one virtual
hour (about 30 s on 2 cores) and its verdict must hold; the verdict itself is checked
on made-up samples, so a leak, a growing thread or handle count, a lost episode or a
late cue does trip it.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.soak import SHORT_RUN, Sample, SoakSettings, judge, run  # noqa: E402


def _samples(n: int = 12, rss_mb_per_sample: float = 0.0, cache_mb_per_sample: float = 0.0,
             threads_from: int | None = None, fds_from: int | None = None) -> list[Sample]:
    out = []
    for i in range(n):
        cache_kb = int(1024 * cache_mb_per_sample * i)
        out.append(Sample(virtual_s=300.0 * i, wall_s=2.0 * i,
                          rss_kb=int(150_000 + 1024 * rss_mb_per_sample * i) + cache_kb,
                          py_objects=36_000 + (i % 3) * 50,
                          threads=3 + (1 if threads_from is not None and i >= threads_from else 0), tasks=5,
                          fds=10 + (i - fds_from if fds_from is not None and i >= fds_from else 0),
                          diary_episodes=i, diary_records=8 * i, episodes_started=i,
                          tts_cache_lines=min(128, 10 * i), tts_cache_kb=cache_kb))
    return out


def test_flat_run_passes() -> None:
    verdict = judge(_samples(), warmup_s=600, episodes_started=11, diary_episodes=11,
                    cue_lateness=[(0.0, True, True), (0.019, True, True), (0.6, False, True), (2.5, False, False)])
    assert verdict["ok"], verdict["failures"]
    assert verdict["figures"]["threads_min_max"] == [3, 3]


def test_the_voice_cache_filling_up_is_not_a_leak() -> None:
    assert judge(_samples(cache_mb_per_sample=2.0), warmup_s=600)["ok"]


@pytest.mark.parametrize("samples, what", [
    (_samples(rss_mb_per_sample=1.0), "RSS"),             # ~12 MB an hour
    (_samples(rss_mb_per_sample=0.3), "MB/h"),            # slow, but 3.6 MB an hour
    (_samples(threads_from=6), "threads changed"),        # a thread that never ends
    (_samples(fds_from=4), "fds changed"),                # a handle opened per episode
])
def test_a_leak_trips_the_verdict(samples: list[Sample], what: str) -> None:
    verdict = judge(samples, warmup_s=600)
    assert not verdict["ok"]
    assert any(what in failure for failure in verdict["failures"]), verdict["failures"]


def test_lost_episodes_and_late_cues_trip_the_verdict() -> None:
    assert "in the diary" in judge(_samples(), 600, episodes_started=5, diary_episodes=4)["failures"][0]
    late_free = judge(_samples(), 600, cue_lateness=[(0.2, True, True)])
    assert "speaker was free" in late_free["failures"][0]
    late_queued = judge(_samples(), 600, cue_lateness=[(1.5, False, True)])
    assert "queued behind a line" in late_queued["failures"][0]
    early = judge(_samples(), 600, cue_lateness=[(-0.1, True, True)])
    assert "before it was due" in early["failures"][0]
    assert not judge(_samples(3), 600)["ok"]  # too short to tell




def test_the_warm_up_lasts_until_the_voice_cache_is_full() -> None:
    """Only the cache's audio is subtracted, not the allocator pages around it: growth
    while it fills is the cache's, growth after it is full is a leak."""
    filling = [dataclasses.replace(s, tts_cache_lines=min(128, 20 * i), rss_kb=s.rss_kb + 1024 * min(i, 7))
               for i, s in enumerate(_samples(16))]
    assert not judge(filling, warmup_s=600)["ok"]
    verdict = judge(filling, warmup_s=600, voice_cache_lines=128)
    assert verdict["ok"], verdict["failures"]
    assert verdict["figures"]["baseline_at_h"] == round(7 * 300 / 3600, 2)
    leaking = [dataclasses.replace(s, rss_kb=s.rss_kb + 1024 * i) for i, s in enumerate(filling)]
    assert not judge(leaking, warmup_s=600, voice_cache_lines=128)["ok"]


def test_a_cache_full_only_at_the_end_is_judged_from_the_warm_up() -> None:
    """Too few samples after the cache filled to judge from: the warm-up's baseline, not a failure."""
    late = [dataclasses.replace(s, tts_cache_lines=128 if i >= 10 else 10 * i) for i, s in enumerate(_samples(12))]
    verdict = judge(late, warmup_s=600, voice_cache_lines=128)
    assert verdict["ok"], verdict["failures"]
    assert verdict["figures"]["baseline_at_h"] == round(600 / 3600, 2)


def test_the_short_runs_limits_still_catch_a_per_turn_leak() -> None:
    assert judge(_samples(rss_mb_per_sample=0.15), 600, SHORT_RUN)["ok"]  # the 1.8 MB/h of a warm-up
    leak = judge(_samples(rss_mb_per_sample=1.25), 600, SHORT_RUN)  # 15 MB/h: an utterance kept per turn
    assert not leak["ok"] and any("MB/h" in f for f in leak["failures"])


def test_an_hour_of_use_in_virtual_time(tmp_path: Path) -> None:
    result = run(SoakSettings(hours=1.0, sample_minutes=5.0, warmup_minutes=10.0, dropout_every_minutes=20.0),
                 tmp_path, limits=SHORT_RUN)
    verdict = result["verdict"]
    assert verdict["ok"], (verdict["failures"], verdict["figures"].get("baseline_at_h"))
    episodes = result["episodes"]
    assert episodes["started"] >= 4, "the scripted person should get several episodes going in an hour"
    assert episodes["in_diary"] == episodes["closed"] == episodes["started"]
    assert episodes["diary_records"] >= 5 * episodes["started"]
    coach = result["coach"]
    assert coach["cues_checked"] >= 30 and coach["cues_checked"] == coach["cues_said"]
    timeline = result["timeline"]
    assert timeline["mic_dropouts"] >= 1 and timeline["mic_reopens"] == timeline["mic_dropouts"]
    samples = result["samples"]
    assert {s["threads"] for s in samples} == {samples[0]["threads"]}
    assert {s["fds"] for s in samples} == {samples[0]["fds"]}
    assert (tmp_path / "events.jsonl").stat().st_size > 0


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_mmap_threshold_can_be_fixed() -> None:
    from assistant.runners.memory import return_big_buffers_to_the_system

    assert return_big_buffers_to_the_system()
