"""Profiles: HaloSpec's defaults, strict validation with one-line errors, TOML round trip."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path

import pytest

from halospec_tui import modes
from halospec_tui import profile as P
from halospec_tui.backends.registry import KINDS, kinds_reference
from halospec_tui.controllers.registry import REGISTRY
from tests.conftest import ROOT


def test_defaults_are_halospecs_constants() -> None:
    p = P.Profile()
    assert p.run.modes == [f"fixed_{k}" for k in range(1, 9)] + ["adaptive"]
    assert (p.run.warmup, p.run.steps_fixed, p.run.steps_adaptive) == (5, 10, 15)
    assert (p.run.cooldown_s, p.run.warmup_interval_s) == (2.0, 1.0)
    r = p.request
    assert (r.max_tokens, r.temperature, r.top_p, r.stop) == (64, 0.0, 1.0, ["</think>"])
    assert (r.timeout_s, r.attempts, r.backoff_ms) == (60.0, 3, 400.0)
    assert r.prompt.startswith("Explain speculative decoding in exactly ONE sentence.")
    c = p.controller.latency
    assert (c.initial_k, c.ema_alpha, c.low_factor, c.high_factor) == (4, 0.4, 0.85, 1.05)
    assert (c.default_low_ms, c.default_high_ms, c.step_up, c.step_down, c.gentle_below) == (
        9000.0,
        22000.0,
        1,
        2,
        6,
    )
    assert (p.load.start_step, p.load.duration_s) == (6, 30.0)
    assert (p.score.avg, p.score.p95, p.score.stddev) == (1.0, 0.5, 0.2)


def test_round_trip_through_tomli_w(tmp_path: Path) -> None:
    p = P.embedded_default()
    p.run.modes = ["fixed_2", "adaptive:acceptance"]
    p.request.stop = ["</think>", "\n\n"]
    p.controller.acceptance.window = 64
    path = p.save(tmp_path / "x.toml")
    assert P.load(path) == p


def test_shipped_default_profile_is_the_builtin_default() -> None:
    assert P.load(ROOT / "profiles" / "default.toml") == P.embedded_default()


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "profiles").glob("*.toml")))
def test_shipped_profiles_load(name: str) -> None:
    P.load(ROOT / "profiles" / f"{name}.toml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("run = [", "not valid TOML"),
        ("[run]\nwarmups = 3\n", "run.warmups: unknown key"),
        ("[run]\nwarmup = -1\n", "run.warmup: expected a value from 0 to 1000, got -1"),
        ("[run]\nwarmup = 'five'\n", "run.warmup: expected an integer, got 'five'"),
        ("[run]\nmodes = ['fixed_0']\n", "run.modes[0]: expected K from 1 to 64"),
        ("[run]\nmodes = ['turbo']\n", "run.modes[0]: expected fixed_K"),
        ("[run]\nmodes = ['adaptive:magic']\n", "unknown controller 'magic'"),
        ("[backend]\nkind = 'ollama'\n", "backend.kind: expected one of embedded"),
        (
            "[backend]\nkind = 'vllm'\ndraft_channel = 'pool'\n",
            "backend.draft_channel: vllm supports none, request (or auto), got 'pool'",
        ),
        ("[request]\ntop_p = 1.5\n", "request.top_p: expected a value from 0 to 1, got 1.5"),
        ("[controller.latency]\nk_min = 9\n", "controller.latency.k_min: expected at most k_max"),
        ("[controller.model]\nk_max = 0\n", "controller.model.k_max: expected a value from 1"),
        (
            "[controller.acceptance]\nup = 0.9\n",
            "controller.acceptance: expected up_big >= up >= down >= down_big",
        ),
        ("run = 3\n", "run: expected a table"),
    ],
)
def test_bad_profiles_raise_one_line_naming_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(P.ProfileError) as e:
        P.load(path)
    msg = str(e.value)
    assert expected in msg
    assert msg.startswith(str(path))
    assert "\n" not in msg


def test_controller_and_backend_tables_come_from_the_registries() -> None:
    """One registry entry is all a controller or a backend kind needs: the profile's
    [controller.NAME] tables, the modes it accepts and the kinds and channels it checks."""
    fields = {f.name: f.type for f in dataclasses.fields(P.ControllerSettings)}
    assert fields == {name: entry.settings for name, entry in REGISTRY.items()}
    assert isinstance(P.Profile().controller.bandit, REGISTRY["bandit"].settings)
    for name in REGISTRY:
        P.from_dict({"run": {"modes": [f"adaptive:{name}"]}})
    kind_field = next(f for f in dataclasses.fields(P.BackendSettings) if f.name == "kind")
    assert kind_field.metadata["choices"] == tuple(KINDS)
    for kind, entry in KINDS.items():
        for channel in ("auto", *entry.channels):
            P.from_dict({"backend": {"kind": kind, "draft_channel": channel}})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(P.ProfileError, match="file not found"):
        P.load(tmp_path / "nope.toml")


def test_halospec_load_env_turns_schedule_on() -> None:
    p = P.apply_env(P.Profile(), {"HALOSPEC_LOAD": "1"})
    assert p.load.scheduled and p.load_scheduled_for("adaptive")
    assert not p.load_scheduled_for("fixed_3")
    assert p.load_scheduled_for("adaptive:model")
    assert not P.apply_env(P.Profile(), {}).load.scheduled


def test_parse_mode() -> None:
    assert modes.parse("fixed_7") == ("fixed", 7)
    assert modes.parse("adaptive") == ("latency", None)
    assert modes.parse("adaptive:bandit") == ("bandit", None)
    assert (modes.fixed(7), modes.adaptive("bandit")) == ("fixed_7", "adaptive:bandit")
    assert modes.is_fixed("fixed_7") and not modes.is_fixed("adaptive:bandit")
    assert modes.fixed_k("fixed_12") == 12
    with pytest.raises(ValueError):
        modes.parse("fixed_x")


def test_toml_is_plain() -> None:
    data = tomllib.loads(P.Profile().to_toml())
    assert data["run"]["warmup"] == 5
    assert not any(isinstance(v, float) and math.isnan(v) for v in data["run"].values())


def test_settings_reference_in_docs_is_current() -> None:
    """docs/profiles.md lists every setting with its default and every backend kind
    (regenerate: scripts/gen_profile_docs.py)."""
    doc = (ROOT / "docs" / "profiles.md").read_text(encoding="utf-8")
    assert P.settings_reference() in doc
    assert kinds_reference() in doc
