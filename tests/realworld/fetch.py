"""Bring the real-world corpus (corpora.toml) into a cache outside git and load it.

Each pinned package is downloaded once with the ordinary client, by name and version:
``python -m pip download --no-deps --no-binary :all: NAME==VERSION`` (``npm pack
NAME@VERSION`` for ``kind = "npm"``), checked against its sha256, and only the files
matching its ``messages`` patterns (and its licence file) are unpacked into
``CACHE/NAME-VERSION/``. A package already unpacked (or an archive already downloaded)
is not fetched again, so the corpus works offline once cached.

Nothing here skips: a failed download or a wrong checksum raises :class:`CorpusError`.

    python -m tests.realworld.fetch        # fetch now, print where the corpus is
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CORPORA = HERE / "corpora.toml"
MANIFEST = HERE / "manifest.toml"
CACHE_ENV = "MAILPREFS_CORPUS_DIR"
CLASSES = ("bounce", "complaint", "auto_reply", "other")
_DOWNLOAD_TIMEOUT_S = 600


class CorpusError(RuntimeError):
    """The corpus could not be fetched, checked or loaded: the message says why."""


@dataclass(frozen=True)
class Package:
    key: str
    kind: str
    name: str
    version: str
    archive: str
    sha256: str
    licence: str
    licence_file: str
    messages: tuple[str, ...]

    @property
    def folder(self) -> str:
        return f"{self.name}-{self.version}"

    def wanted(self, member: str) -> bool:
        return member == self.licence_file or any(
            fnmatch.fnmatchcase(member, pattern) for pattern in self.messages)


@dataclass(frozen=True)
class Sample:
    """One corpus message and what its source project's tests say it is."""

    id: str
    package: str
    path: str
    licence: str
    family: str
    expected: str
    recipients: tuple[str, ...]
    recipients_known: bool
    permanent: bool | None
    verdict_from: str
    source_expectation: str
    note: str = ""
    file: Path = field(default=Path(), compare=False)

    def raw(self) -> bytes:
        return self.file.read_bytes()


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser().resolve() if configured else REPO / ".venv" / "corpora"


def packages(path: Path = CORPORA) -> dict[str, Package]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    out = {}
    for key, p in data.get("package", {}).items():
        try:
            out[p["name"]] = Package(
                key=key, kind=p.get("kind", "pypi"), name=p["name"], version=p["version"],
                archive=p["archive"], sha256=p["sha256"].lower(), licence=p["licence"],
                licence_file=p["licence_file"], messages=tuple(p["messages"]))
        except KeyError as exc:
            raise CorpusError(f"{path.name}: package {key!r} lacks {exc.args[0]!r}") from None
        if out[p["name"]].kind not in ("pypi", "npm"):
            raise CorpusError(f"{path.name}: package {key!r}: kind must be pypi or npm")
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One fetcher at a time per cache (parallel test runs share it)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _download(package: Package, into: Path) -> Path:
    """Download the package's archive into ``into`` with pip or npm; return its path."""
    if package.kind == "pypi":
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   "--disable-pip-version-check", "--no-input", "-q",
                   f"{package.name}=={package.version}", "-d", str(into)]
    else:
        npm = shutil.which("npm")
        if npm is None:
            raise CorpusError(f"{package.name}@{package.version}: npm is needed to fetch it and "
                              "is not on PATH")
        command = [npm, "pack", f"{package.name}@{package.version}", "--silent",
                   "--pack-destination", str(into)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              timeout=_DOWNLOAD_TIMEOUT_S, cwd=into)
    except subprocess.TimeoutExpired:
        raise CorpusError(f"downloading {package.name} {package.version} took more than "
                          f"{_DOWNLOAD_TIMEOUT_S} s: {' '.join(command)}") from None
    found = into / package.archive
    if done.returncode != 0 or not found.is_file():
        tail = "\n".join((done.stderr or done.stdout or "").strip().splitlines()[-8:])
        raise CorpusError(
            f"could not download {package.name} {package.version} ({' '.join(command[1:4])} "
            f"... exited {done.returncode}; expected {package.archive}). The corpus needs the "
            f"package registry once; after that it is cached in {into.parent}.\n{tail}")
    return found


def _members(archive: Path) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of every regular file in a .tar.gz/.tgz or .zip archive."""
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir():
                    yield info.filename, z.read(info)
        return
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            if member.isfile():
                handle = tar.extractfile(member)
                if handle is not None:
                    yield member.name, handle.read()


def _safe(member: str) -> PurePosixPath:
    path = PurePosixPath(member)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise CorpusError(f"refusing archive member {member!r}")
    return path


def ensure_package(package: Package, cache: Path) -> Path:
    """The folder holding the package's unpacked message files; fetch it if needed."""
    dest = cache / package.folder
    stamp_text = f"{package.sha256}\n" + "\n".join(sorted(package.messages)) + "\n"
    stamp = dest / ".complete"
    if stamp.is_file() and stamp.read_text() == stamp_text:
        return dest
    archives = cache / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    archive = archives / package.archive
    if not archive.is_file() or _sha256(archive) != package.sha256:
        with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
            got = _download(package, Path(tmp))
            digest = _sha256(got)
            if digest != package.sha256:
                raise CorpusError(
                    f"{package.archive}: sha256 {digest} is not the pinned {package.sha256} "
                    "(a changed release?); corpora.toml pins the archive, check it before "
                    "changing the pin")
            os.replace(got, archive)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".unpack-") as tmp:
        count = 0
        for name, data in _members(archive):
            if package.wanted(name):
                target = Path(tmp) / _safe(name)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                count += 1
        if count == 0:
            raise CorpusError(f"{package.archive}: no member matches {list(package.messages)}")
        (Path(tmp) / ".complete").write_text(stamp_text)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        os.mkdir(tmp)  # TemporaryDirectory removes it again
    return dest


def ensure_corpora(cache: Path | None = None) -> dict[str, Path]:
    """Fetch every pinned package (when not cached yet): name -> unpacked folder."""
    cache = cache or cache_dir()
    with _locked(cache):
        return {name: ensure_package(p, cache) for name, p in packages().items()}


def _sample(entry: dict[str, object], where: str) -> Sample:
    try:
        sample = Sample(
            id=str(entry["id"]), package=str(entry["package"]), path=str(entry["path"]),
            licence=str(entry["licence"]), family=str(entry["family"]),
            expected=str(entry["expected"]),
            recipients=tuple(str(a) for a in entry["recipients"]),  # type: ignore[attr-defined]
            recipients_known=bool(entry["recipients_known"]),
            permanent=entry.get("permanent"),  # type: ignore[arg-type]
            verdict_from=str(entry["verdict_from"]),
            source_expectation=str(entry["source_expectation"]),
            note=str(entry.get("note", "")))
    except KeyError as exc:
        raise CorpusError(f"{where}: lacks {exc.args[0]!r}") from None
    if sample.expected not in CLASSES:
        raise CorpusError(f"{where}: expected must be one of {CLASSES}")
    if any(a != a.lower() for a in sample.recipients):
        raise CorpusError(f"{where}: recipients must be lower-case")
    return sample


def load_corpus(cache: Path | None = None) -> list[Sample]:
    """Every manifest message, fetched and checked (each file exists and is pinned)."""
    folders = ensure_corpora(cache)
    pins = packages()
    data = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    samples, seen = [], set()
    for index, entry in enumerate(data.get("message", [])):
        sample = _sample(entry, f"manifest.toml message #{index + 1}")
        if sample.id in seen:
            raise CorpusError(f"manifest.toml: id {sample.id!r} twice")
        seen.add(sample.id)
        pin = pins.get(sample.package)
        if pin is None:
            raise CorpusError(f"{sample.id}: package {sample.package!r} is not in corpora.toml")
        if not pin.wanted(sample.path) or sample.path == pin.licence_file:
            raise CorpusError(f"{sample.id}: {sample.path} is not among {pin.name}'s messages")
        if sample.licence != pin.licence:
            raise CorpusError(f"{sample.id}: licence {sample.licence} but {pin.name} is "
                              f"{pin.licence}")
        file = folders[sample.package] / _safe(sample.path)
        if not file.is_file():
            raise CorpusError(f"{sample.id}: {sample.path} is not in {pin.archive}")
        samples.append(Sample(**{**sample.__dict__, "file": file}))
    return samples


if __name__ == "__main__":
    corpus = load_corpus()
    print(f"{len(corpus)} messages in {cache_dir()}")
