"""Model install/list/remove: checksums, atomic unpack, resumed downloads, clear errors."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.errors import UserFacingError
from assistant.speech_in import models


def fake_model_zip(path: Path, top: str = "vosk-model-fake-0.1", valid: bool = True) -> Path:
    """A zip with the structure of a small Vosk model (contents are placeholders)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{top}/am/final.mdl", b"\0B<TransitionModel> " + b"\0fake acoustic model" * 500)
        zf.writestr(f"{top}/conf/model.conf", "--min-active=200\n")
        zf.writestr(f"{top}/conf/mfcc.conf", "--sample-frequency=16000\n")
        if valid:
            zf.writestr(f"{top}/graph/HCLr.fst", b"fst" * 100)
            zf.writestr(f"{top}/graph/Gr.fst", b"fst" * 100)
        zf.writestr(f"{top}/ivector/final.ie", b"ie" * 100)
        zf.writestr(f"{top}/README", "fake model for tests\n")
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def cli(*args: str, models_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assistant.commands.cli", "models", "--dir", str(models_dir), *args],
                          capture_output=True, text=True, timeout=60)


def test_wrong_checksum_refuses_and_installs_nothing(tmp_path):
    zip_path = fake_model_zip(tmp_path / "m.zip")
    root = tmp_path / "models"
    result = cli("install", "--from", str(zip_path), "--sha256", "0" * 64, models_dir=root)
    assert result.returncode == 2
    assert "does not match the SHA-256" in result.stderr and "nothing was installed" in result.stderr
    assert "Traceback" not in result.stderr
    assert leftovers(root) == []
    assert models.find_model(root) is None


def test_known_model_zip_is_checked_against_the_published_checksum(tmp_path):
    zip_path = fake_model_zip(tmp_path / f"{models.DEFAULT_MODEL}.zip", top=models.DEFAULT_MODEL)
    root = tmp_path / "models"
    with pytest.raises(UserFacingError, match=models.KNOWN_MODELS[models.DEFAULT_MODEL].sha256):
        models.install(models.DEFAULT_MODEL, from_zip=zip_path, root=root)
    assert leftovers(root) == []


def test_unknown_zip_needs_a_checksum_or_explicit_trust(tmp_path):
    zip_path = fake_model_zip(tmp_path / "m.zip")
    root = tmp_path / "models"
    with pytest.raises(UserFacingError, match="--sha256 HEX.*--no-verify"):
        models.install("vosk-model-fake-0.1", from_zip=zip_path, root=root)
    path = models.install("vosk-model-fake-0.1", from_zip=zip_path, root=root, verify=False)
    assert models.model_problem(path) is None


def test_good_zip_installs_atomically_and_can_be_listed_and_removed(tmp_path):
    zip_path = fake_model_zip(tmp_path / "m.zip")
    root = tmp_path / "models"
    result = cli("install", "--from", str(zip_path), "--sha256", sha(zip_path), models_dir=root)
    assert result.returncode == 0, result.stderr
    assert leftovers(root) == ["vosk-model-fake-0.1"]  # no staging dirs left behind
    assert models.find_model(root) == root / "vosk-model-fake-0.1"
    listing = cli("list", models_dir=root)
    assert "* vosk-model-fake-0.1" in listing.stdout and "ok" in listing.stdout
    assert models.DEFAULT_MODEL in listing.stdout  # offered as available
    again = cli("install", "--from", str(zip_path), "--sha256", sha(zip_path), models_dir=root)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert cli("remove", "vosk-model-fake-0.1", models_dir=root).returncode == 0
    assert leftovers(root) == []


def test_zip_without_a_model_is_refused(tmp_path):
    zip_path = fake_model_zip(tmp_path / "m.zip", valid=False)
    root = tmp_path / "models"
    with pytest.raises(UserFacingError, match="does not contain a Vosk model.*graph"):
        models.install("x", from_zip=zip_path, sha256=sha(zip_path), root=root)
    assert leftovers(root) == []
    not_zip = tmp_path / "notes.zip"
    not_zip.write_text("hello")
    with pytest.raises(UserFacingError, match="not a readable zip"):
        models.install("x", from_zip=not_zip, verify=False, root=root)
    assert leftovers(root) == []


def test_replacing_a_model_never_leaves_it_half_there(tmp_path):
    zip_path = fake_model_zip(tmp_path / "m.zip")
    root = tmp_path / "models"
    models.install("m", from_zip=zip_path, sha256=sha(zip_path), root=root)
    broken = fake_model_zip(tmp_path / "broken.zip", valid=False)
    with pytest.raises(UserFacingError):
        models.install("m", from_zip=broken, sha256=sha(broken), root=root, force=True)
    assert models.model_problem(root / "m") is None  # the old one is untouched
    models.install("m", from_zip=zip_path, sha256=sha(zip_path), root=root, force=True)
    assert leftovers(root) == ["m"]


def test_incomplete_model_is_ignored_with_the_reason(tmp_path):
    root = tmp_path / "models"
    (root / "half" / "am").mkdir(parents=True)
    assert models.find_model(root) is None
    assert models.model_problem(root / "half") == "am/final.mdl is missing"
    assert "INCOMPLETE" in cli("list", models_dir=root).stdout


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files and honours ``Range: bytes=N-`` like the real model server."""

    requests: list[str | None] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        data = path.read_bytes()
        wanted = self.headers.get("Range")
        type(self).requests.append(wanted)
        start = int(wanted.split("=")[1].rstrip("-")) if wanted else 0
        self.send_response(206 if wanted else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    served = tmp_path / "served"
    served.mkdir()
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(served), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _RangeHandler.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    httpd.shutdown()
    httpd.server_close()


def test_download_resumes_a_partial_file_and_verifies_it(server, tmp_path):
    url, served = server
    zip_path = fake_model_zip(served / "m.zip")
    root = tmp_path / "models"
    root.mkdir()
    data = zip_path.read_bytes()
    (root / ".m.zip.part").write_bytes(data[: len(data) // 2])  # an interrupted earlier attempt
    path = models.install("m", url=f"{url}/m.zip", sha256=sha(zip_path), root=root, progress=False)
    assert _RangeHandler.requests == [f"bytes={len(data) // 2}-"]
    assert models.model_problem(path) is None
    assert leftovers(root) == ["m"]


def test_corrupt_download_is_retried_cleanly_then_refused(server, tmp_path):
    url, served = server
    zip_path = fake_model_zip(served / "m.zip")
    root = tmp_path / "models"
    root.mkdir()
    (root / ".m.zip.part").write_bytes(b"garbage from a different file")
    with pytest.raises(UserFacingError, match="does not match its SHA-256"):
        models.install("m", url=f"{url}/m.zip", sha256="1" * 64, root=root, progress=False)
    assert _RangeHandler.requests[0] is not None and _RangeHandler.requests[1] is None  # resume, then clean
    assert leftovers(root) == []
    path = models.install("m", url=f"{url}/m.zip", sha256=sha(zip_path), root=root, progress=False)
    assert path == root / "m"


def test_models_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CRAMP_COACH_MODELS", str(tmp_path / "elsewhere"))
    assert models.models_dir() == tmp_path / "elsewhere"


# ------------------------------------------------------------------ Whisper tiny.en


def whisper_copy(source: Path, dest: Path, corrupt: str | None = None, drop: str | None = None) -> Path:
    """A folder of links to the real files, with one of them corrupted or left out."""
    dest.mkdir()
    for name in models.WHISPER_FILES:
        if name == drop:
            continue
        if name == corrupt:
            data = bytearray((source / name).read_bytes())
            data[len(data) // 2] ^= 0x20
            (dest / name).write_bytes(bytes(data))
        else:
            (dest / name).symlink_to(source / name)
    return dest


def test_whisper_installs_from_a_folder_with_every_checksum_verified(tmp_path, whisper_dir):
    root = tmp_path / "models"
    result = cli("install", models.WHISPER_MODEL, "--from", str(whisper_dir), models_dir=root)
    assert result.returncode == 0, result.stderr
    assert "SHA-256" in result.stdout
    installed = root / models.WHISPER_MODEL
    assert leftovers(root) == [models.WHISPER_MODEL]
    assert sorted(p.name for p in installed.iterdir()) == sorted(models.WHISPER_FILES)
    assert not any(p.is_symlink() for p in installed.iterdir())
    assert models.whisper_problem(installed) is None
    assert models.find_whisper(root) == installed
    assert models.find_model(root) is None  # not mistaken for a Vosk model
    listing = cli("list", models_dir=root)
    assert f"* {models.WHISPER_MODEL}" in listing.stdout and "ok" in listing.stdout
    again = cli("install", models.WHISPER_MODEL, "--from", str(whisper_dir), models_dir=root)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_whisper_installs_from_a_zip(tmp_path, whisper_dir):
    archive = tmp_path / "faster-whisper-tiny.en.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in models.WHISPER_FILES:
            zf.write(whisper_dir / name, f"faster-whisper-tiny.en/{name}")
    path = models.install_whisper(archive, root=tmp_path / "models", progress=False)
    assert models.whisper_problem(path) is None


@pytest.mark.parametrize("bad", ["tokenizer.json", "config.json"])
def test_a_corrupt_whisper_file_installs_nothing_and_says_which(tmp_path, whisper_dir, bad):
    source = whisper_copy(whisper_dir, tmp_path / "src", corrupt=bad)
    root = tmp_path / "models"
    result = cli("install", models.WHISPER_MODEL, "--from", str(source), models_dir=root)
    assert result.returncode == 2
    assert f"{bad} from" in result.stderr and "does not match its SHA-256" in result.stderr
    assert "nothing was installed" in result.stderr and "Traceback" not in result.stderr
    assert leftovers(root) == []
    assert models.find_whisper(root) in (None, whisper_dir)  # never the broken copy


def test_a_whisper_folder_missing_a_file_is_refused(tmp_path, whisper_dir):
    source = whisper_copy(whisper_dir, tmp_path / "src", drop="vocabulary.txt")
    with pytest.raises(UserFacingError, match="has no vocabulary.txt; nothing was installed"):
        models.install_whisper(source, root=tmp_path / "models", progress=False)
    assert leftovers(tmp_path / "models") == []


def test_whisper_download_checks_the_checksum(tmp_path, whisper_dir):
    """The download path (local HTTP server standing in for the model host): a file that differs
    from the pinned SHA-256 is refused."""
    served = whisper_copy(whisper_dir, tmp_path / "served", corrupt="vocabulary.txt")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(UserFacingError, match="vocabulary.txt from the download does not match"):
            models.install_whisper(root=tmp_path / "models", progress=False,
                                   base_url=f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert leftovers(tmp_path / "models") == []
