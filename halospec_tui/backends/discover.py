"""Find inference servers on the usual local addresses, and say what each one is.

    found = discover()                      # [Found, ...], about half a second

Every probe is a short GET with a 0.5 s timeout (connect and read), all of them in parallel,
so a machine with nothing listening answers at once and a hung server costs at most the
timeout. Nothing is generated: no completion request is sent and no model gets loaded.

Addresses probed by default: Lemonade (13305, and 8000 before v10.1), llama-server (8080),
vLLM (8000) and LM Studio (1234): the default URLs of backends/registry.py. Port 8000 is
probed once; its answers say which it is. Writing a profile for what was found is
halospec_tui/discovered_profile.py's; `halospec-tui discover` (cli.py) is the command line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from halospec_tui.backends.metrics import parse_spec_metrics
from halospec_tui.backends.registry import KINDS
from halospec_tui.textfile import one_line

PROBE_TIMEOUT_S = 0.5
DEFAULT_ADDRESSES: tuple[str, ...] = (
    KINDS["lemonade"].default_url,  # Lemonade (v10.1.0 on)
    KINDS["vllm"].default_url,  # vLLM, and Lemonade before v10.1.0 (port 8000, probed once)
    KINDS["llamacpp"].default_url,  # llama-server
    KINDS["lmstudio"].default_url,  # LM Studio
)
PROBE_PATHS = (
    "/api/v1/health",
    "/v1/models",
    "/props",
    "/metrics",
    "/version",
    "/api/v0/models",
    "/health",
)
if TYPE_CHECKING:
    import httpx  # imported where a probe needs it: `halospec-tui --help` does not

_SPEC_METRIC = re.compile(
    r"^(llamacpp:|vllm:|lemonade_llamacpp_)spec_decode_num_draft_tokens_total", re.M
)


@dataclass
class Found:
    """One server that answered, as the monitor and the command line list it."""

    url: str
    kind: str  # a backend kind: lemonade, llamacpp, vllm, lmstudio, openai
    label: str  # what it is, in words
    models: list[str] = field(default_factory=list)
    loaded_model: str = ""
    draft_counters: str = "unknown"  # how it reports drafting, in words
    channel: str = "request"  # the draft channel a written profile uses
    notes: list[str] = field(default_factory=list)
    k_guess: int | None = None  # the server's fixed draft length, when /metrics shows it

    @property
    def model(self) -> str:
        return self.loaded_model or (self.models[0] if self.models else "")

    def line(self) -> str:
        """One line, whatever the server answered (its model names are escaped)."""
        models = ", ".join(one_line(m) for m in self.models[:3]) + (
            f" (+{len(self.models) - 3})" if len(self.models) > 3 else ""
        )
        return (
            f"{self.label} at {self.url}: backend {self.kind}, channel {self.channel}; "
            f"models: {models or '-'}; draft counters: {self.draft_counters}"
        )


def _get(client: httpx.Client, url: str) -> tuple[int, Any, str] | None:
    """(status, decoded JSON or None, text) or None when nothing answered."""
    import httpx

    try:
        r = client.get(url)
    except httpx.HTTPError:
        return None
    text = r.text[:200_000]
    try:
        data = r.json()
    except ValueError:
        data = None
    return r.status_code, data, text


def _ok_json(ans: tuple[int, Any, str] | None) -> Any:
    return ans[1] if ans is not None and ans[0] == 200 else None


def _model_ids(data: Any) -> list[str]:
    items = data.get("data") if isinstance(data, dict) else None
    return [str(m["id"]) for m in items or [] if isinstance(m, dict) and m.get("id")]


def _owned_by(data: Any) -> set[str]:
    items = data.get("data") if isinstance(data, dict) else None
    return {str(m.get("owned_by", "")) for m in items or [] if isinstance(m, dict)}


def classify(url: str, answers: dict[str, tuple[int, Any, str] | None]) -> Found | None:
    """What a base URL is, from its answers to PROBE_PATHS (None: nothing answered)."""
    if all(a is None for a in answers.values()):
        return None
    health = _ok_json(answers.get("/api/v1/health"))
    models = _ok_json(answers.get("/v1/models"))
    props = _ok_json(answers.get("/props"))
    version = _ok_json(answers.get("/version"))
    lms = _ok_json(answers.get("/api/v0/models"))
    m = answers.get("/metrics")
    metrics_text = m[2] if m is not None and m[0] == 200 else ""
    has_spec_metrics = bool(_SPEC_METRIC.search(metrics_text))
    ids = _model_ids(models)
    owners = _owned_by(models)

    if isinstance(health, dict) and ("all_models_loaded" in health or "model_loaded" in health):
        embedded = "embedded" in health
        f = Found(
            url,
            "lemonade",
            "HaloSpec embedded engine (Lemonade API)" if embedded else "Lemonade Server",
            models=ids,
            loaded_model=str(health.get("model_loaded") or ""),
            channel="reload",
        )
        f.draft_counters = "per reply (llama-server timings)" + (
            " and /metrics" if has_spec_metrics else ""
        )
        f.notes.append(
            "draft length set by reloading the model (POST /api/v1/load) before each mode"
        )
        return f
    if "vllm" in owners or (
        isinstance(version, dict) and "version" in version and "vllm:" in metrics_text
    ):
        f = Found(url, "vllm", "vLLM", models=ids, channel="none")
        if has_spec_metrics:
            f.draft_counters = "/metrics only (vllm:spec_decode_*)"
            f.k_guess = _k_from_metrics(metrics_text)
        else:
            f.draft_counters = "none seen (start vLLM with --speculative-config)"
        f.notes.append(
            "vLLM fixes the draft length at launch: the sweep cannot change it (channel none)"
        )
        return f
    is_llama = isinstance(props, dict) and "default_generation_settings" in props
    if is_llama or "llamacpp" in owners or "llamacpp:" in metrics_text:
        f = Found(url, "llamacpp", "llama-server", models=ids, channel="request")
        f.draft_counters = "per reply (timings.draft_n)" + (
            " and /metrics" if has_spec_metrics else ""
        )
        # imported here: the llamacpp backend brings httpx, which --help need not load
        from halospec_tui.backends.llamacpp import BUILD_NOTES, draft_build

        build = draft_build(props)
        if build:
            f.notes.append(BUILD_NOTES[build])
        if not metrics_text:
            f.notes.append("no /metrics (start it with --metrics for more proof)")
        return f
    if isinstance(lms, dict) and isinstance(lms.get("data"), list):
        f = Found(
            url,
            "lmstudio",
            "LM Studio",
            models=_model_ids(lms) or ids,
            channel="none",
            draft_counters="per reply (stats of its REST API /api/v0)",
        )
        f.notes.append(
            "LM Studio's draft length is a model setting: the sweep runs on channel none; "
            "set backend.draft_model, or try channel request with backend.n_max_key "
            "(the verdict shows whether LM Studio honours it)"
        )
        return f
    if ids:
        return Found(
            url,
            "openai",
            "OpenAI-compatible server",
            models=ids,
            channel="request",
            draft_counters="per reply if it sends llama-server timings"
            + ("; /metrics" if has_spec_metrics else ""),
        )
    if any(a is not None and a[0] < 500 for a in answers.values()):
        return Found(
            url,
            "openai",
            "HTTP server (not recognised)",
            channel="request",
            notes=["it answers HTTP but lists no models"],
        )
    return None


def _k_from_metrics(text: str) -> int | None:
    m = parse_spec_metrics(text)
    if m.get("drafts"):
        return max(1, round(m.get("draft_tokens", 0.0) / m["drafts"]))
    return None


def probe(
    url: str, *, timeout: float = PROBE_TIMEOUT_S, client: httpx.Client | None = None
) -> Found | None:
    """Probe one base URL (its paths in parallel) and classify it."""
    import httpx

    url = url.rstrip("/")
    own = client is None
    client = client or httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False)
    try:
        with ThreadPoolExecutor(max_workers=len(PROBE_PATHS)) as pool:
            futures = {p: pool.submit(_get, client, url + p) for p in PROBE_PATHS}
            answers = {p: f.result() for p, f in futures.items()}
    finally:
        if own:
            client.close()
    return classify(url, answers)


def discover(
    addresses: Sequence[str] | None = None, *, timeout: float = PROBE_TIMEOUT_S
) -> list[Found]:
    """Probe `addresses` (default: DEFAULT_ADDRESSES) in parallel; what answered, in order.

    Takes about `timeout` seconds at most (all probes run at once); never raises for a
    server that is down, slow or strange."""
    import httpx

    urls = list(dict.fromkeys(a.rstrip("/") for a in (addresses or DEFAULT_ADDRESSES)))
    limits = httpx.Limits(max_connections=len(urls) * len(PROBE_PATHS), max_keepalive_connections=0)
    with (
        httpx.Client(timeout=httpx.Timeout(timeout), limits=limits) as client,
        ThreadPoolExecutor(max_workers=max(1, len(urls))) as pool,
    ):
        results = list(pool.map(lambda u: probe(u, timeout=timeout, client=client), urls))
    return [f for f in results if f is not None]


def format_found(found: Sequence[Found]) -> str:
    if not found:
        return "no server answered"
    lines = []
    for i, f in enumerate(found, 1):
        lines.append(f"{i}. {f.line()}")
        lines += [f"   - {n}" for n in f.notes]
    return "\n".join(lines)
