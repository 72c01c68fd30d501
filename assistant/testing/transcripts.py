"""Real ``cramp-coach --text`` conversations, typed like a person would, for docs/conversations.md.

Each scenario runs the real program in a subprocess (``--text --time-scale --seed``, a private
data folder) and types each line only once the coach is listening in the expected state (read
from the live event log), so the transcript is what a person at the keyboard would see.

    python -m assistant.testing.transcripts --write docs/conversations.md   # regenerate
    python -m assistant.testing.transcripts --check docs/conversations.md   # still what the coach says?

``--check`` compares the coach's lines (countdown cues aside: under load some merge, by design;
the quiet-moment lines aside: they wait for a quiet part of a hold) with the document;
tests/test_conversations_doc.py runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TIME_SCALE = 10.0
SEED = 7
QUIET_S = 0.1
"""Real seconds without new output before the next line is typed (the coach has had its say)."""
STEP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Step:
    """Type ``text`` (if any) once the coach listens in ``state``; ``after`` real seconds later."""

    state: str
    text: str | None = None
    after: float = 0.0


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    note: str
    steps: tuple[Step, ...]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("report-better", "A cramp reported, eased by the first stretch",
             "Relief first, then the few most telling questions (the rest are only offered), and a "
             "summary in short lines.",
             (Step("idle", "ow my left calf is cramping"), Step("checkin", "it's a bit better now"),
              Step("offer", "yes please"), Step("question", "no"), Step("question", "yes"),
              Step("question", "no"), Step("question", "yes"), Step("question", "no"),
              Step("question", "no"), Step("offer", "no thanks"), Step("idle"))),
    Scenario("still-hurts-twice", "Still hurts, twice",
             "Each \"still hurts\" moves on to another stretch; easing in any wording ends relief.",
             (Step("idle", "my foot is cramping"), Step("checkin", "no it still hurts"),
              Step("checkin", "still hurts"), Step("checkin", "it stopped"), Step("offer", "not now"),
              Step("idle"))),
    Scenario("worse-mid-stretch", "Worse in the middle of a stretch",
             "First aid for a stretch that hurts more: ease off, then something gentler; seeking care "
             "only if it keeps getting worse.",
             (Step("idle", "i've got a cramp in my toes"), Step("hold", "it's getting worse", after=0.6),
              Step("checkin", "better"), Step("offer", "no"), Step("idle"))),
    Scenario("silence-after-aftercare", "Silence after the aftercare",
             "The person walks off after it eases: a shorter prompt, a shorter one, then a quiet close "
             "(never urgent-care advice).",
             (Step("idle", "charley horse"), Step("checkin", "better"), Step("offer"), Step("idle"))),
    Scenario("decline-causes", "No to the causes, then a question",
             "Declining the questions still gives a couple of prevention tips and when to see a "
             "professional; questions about cramps are answered in idle too.",
             (Step("idle", "my arch is cramping"), Step("checkin", "yes it's better"),
              Step("offer", "no thanks"), Step("idle", "what causes foot cramps"), Step("idle"))),
    Scenario("red-flag-answer", "A red-flag answer",
             "A calf that stays swollen or red: a plain instruction to get medical help now, in short "
             "lines, then the offer to stop the questions; the advice is repeated last.",
             (Step("idle", "my right calf is cramping"), Step("checkin", "better"), Step("offer", "yes"),
              Step("question", "yes"), Step("offer", "no"), Step("idle"))),
)


class _Run:
    """One ``cramp-coach --text`` process and its live event log."""

    def __init__(self, workdir: Path, seed: int, time_scale: float) -> None:
        self.log_path = workdir / "events.jsonl"
        env = dict(os.environ, CRAMP_COACH_DATA=str(workdir / "data"), CRAMP_COACH_CONFIG_DIR=str(workdir / "cfg"),
                   PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assistant.commands.cli", "--text", "--time-scale", str(time_scale),
             "--seed", str(seed), "--log-events", str(self.log_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.last_output = time.monotonic()
        self.transcript: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.last_output = time.monotonic()
            self.lines.put(line.rstrip("\n"))

    def _drain(self) -> None:
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            if line.startswith("coach:"):
                self.transcript.append(line)

    def _rows(self) -> list[dict[str, object]]:
        try:
            text = self.log_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def wait_for(self, state: str, heard: int) -> None:
        """Until ``heard`` lines were taken in, the coach listens in ``state`` and has stopped talking."""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        seen: float | None = None  # when the reply was first seen in the log (its lines may still be in the pipe)
        while time.monotonic() < deadline:
            rows = self._rows()
            heard_at = [i for i, r in enumerate(rows) if r.get("type") == "heard"]
            since = heard_at[heard - 1] if heard and len(heard_at) >= heard else (0 if not heard else len(rows))
            listens = [r for r in rows[since:] if r.get("type") == "listen"]  # the reply to the last line typed
            ready = bool(listens) and listens[-1].get("context") == state
            seen = (seen or time.monotonic()) if ready else None
            if seen is not None and time.monotonic() - max(self.last_output, seen) >= QUIET_S:
                self._drain()
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self._drain()
        raise RuntimeError(f"the coach never listened in {state!r}; so far:\n" + "\n".join(self.transcript))

    def type(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.transcript.append(f"you:   {text}")
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=STEP_TIMEOUT_S)
        time.sleep(0.1)
        self._drain()
        return code


def run(scenario: Scenario, *, seed: int = SEED, time_scale: float = TIME_SCALE) -> list[str]:
    """The transcript of one scenario: ``you:`` and ``coach:`` lines in the order they happened."""
    with tempfile.TemporaryDirectory(prefix="cramp-transcript-") as tmp:
        session = _Run(Path(tmp), seed, time_scale)
        typed = 0
        try:
            for step in scenario.steps:
                session.wait_for(step.state, typed)
                if step.text is not None:
                    if step.after:
                        time.sleep(step.after)
                        session._drain()
                    session.type(step.text)
                    typed += 1
        finally:
            code = session.close()
        if code != 0:
            raise RuntimeError(f"cramp-coach --text exited with {code}")
        return session.transcript


def render(results: Sequence[tuple[Scenario, list[str]]], seed: int, time_scale: float) -> str:
    out = [
        "# Conversations",
        "",
        "Six real runs of `cramp-coach --text`, typed like a person would (each line typed only once",
        "the coach is listening for it). `coach:    ...` lines are countdown cues, printed at their",
        f"times on the coach's clock (run {time_scale:g}x faster here). Generated with `--seed {seed}`",
        "by `python -m assistant.testing.transcripts --write docs/conversations.md`;",
        "tests/test_conversations_doc.py checks the coach still says these lines.",
        "",
    ]
    for i, (scenario, lines) in enumerate(results, 1):
        out += [f"## {i}. {scenario.title}", "", scenario.note, "", "```", *lines, "```", ""]
    return "\n".join(out)


def parse(document: str) -> list[list[str]]:
    """The transcripts in a document written by :func:`render`, in order."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in document.splitlines():
        if line == "```":
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def spoken(lines: Sequence[str]) -> list[str]:
    """The lines that must match between runs: what was typed and said, countdown cues aside,
    and the quiet-moment lines aside (the first-use disclaimer and each routine's line for the
    quiet part of its hold: which of them fills a hold that a line typed mid-hold cuts short
    depends on how busy the machine is)."""
    from assistant.paths import prompts_dir

    movable = _quiet_moment_lines(prompts_dir())
    return [line for line in lines if not line.startswith("coach:    ...") and line not in movable]


@lru_cache(maxsize=4)
def _quiet_moment_lines(directory: Path) -> frozenset[str]:
    """The quiet-moment lines as printed, loaded once per prompts directory: ``--check`` calls
    :func:`spoken` twice per scenario and loading and validating ``prompts/`` is not free."""
    from assistant.conversation.content import load_content

    content = load_content(directory)
    quiet = [content.lines["relief.disclaimer"], *(r.during for r in content.routines.values() if r.during)]
    return frozenset(f"coach: {text}" for phrases in quiet for text in phrases.options)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="FILE", type=Path, help="run every scenario and write the document")
    mode.add_argument("--check", metavar="FILE", type=Path, help="run every scenario and compare with the document")
    parser.add_argument("--only", metavar="NAME", help="one scenario (with --check)")
    args = parser.parse_args(argv)
    if args.write:
        results = [(s, run(s)) for s in SCENARIOS]
        args.write.write_text(render(results, SEED, TIME_SCALE), encoding="utf-8")
        print(f"wrote {args.write}")
        return 0
    blocks = parse(args.check.read_text(encoding="utf-8"))
    if len(blocks) != len(SCENARIOS):
        print(f"{args.check}: {len(blocks)} transcripts, expected {len(SCENARIOS)}", file=sys.stderr)
        return 1
    failed = 0
    for scenario, block in zip(SCENARIOS, blocks, strict=True):
        if args.only and scenario.name != args.only:
            continue
        now = spoken(run(scenario))
        if now != spoken(block):
            failed += 1
            print(f"{scenario.name}: the coach now says\n  " + "\n  ".join(now), file=sys.stderr)
    if failed:
        print("regenerate: python -m assistant.testing.transcripts --write " + str(args.check), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
