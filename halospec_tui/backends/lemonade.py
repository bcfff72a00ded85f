"""Lemonade Server: `/api/v1/...`, draft length through a model reload (channel `reload`).

Lemonade runs a current llama-server as its child, which ignores per-request draft keys, so
the draft length is set where llama-server takes it, at load time: before each mode the
backend sends

    POST /api/v1/load {"model_name": MODEL, "llamacpp_args": "--spec-type T --spec-draft-n-max K"}

and confirms it through `GET /api/v1/health` (`all_models_loaded[].recipe_options.llamacpp_args`
and `launch_command`). The draft model itself comes from the Lemonade model's `draft`
checkpoint (`-md` is a reserved flag there). An adaptive mode on this channel reloads the model
every time its controller changes k: allowed, with a warning, since each reload costs seconds.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import httpx

from halospec_tui.backends.base import DraftChannelError
from halospec_tui.backends.openai_compat import OpenAICompatBackend

if TYPE_CHECKING:
    from halospec_tui.profile import Profile


def llamacpp_args(spec_type: str, k: int, n_min: int = 0) -> str:
    """The `llamacpp_args` string that sets draft length k on a current llama-server."""
    args = f"--spec-type {spec_type} --spec-draft-n-max {k}"
    if n_min > 0:
        args += f" --spec-draft-n-min {min(n_min, k)}"
    return args


def _flag_value(text: str, flag: str) -> str | None:
    """The value of `flag` in a command line or argument string (`--f V` or `--f=V`)."""
    m = re.search(rf"(?:^|\s){re.escape(flag)}(?:\s+|=)(\S+)", text or "")
    return m.group(1).strip("'\"") if m else None


def confirm_loaded(health: Any, model: str, spec_type: str, k: int) -> dict[str, Any]:
    """What Lemonade's health says about `model` after a reload: confirmed when its
    llamacpp_args (and its launch_command, if reported) carry --spec-draft-n-max k."""
    out: dict[str, Any] = {"k": k, "confirmed": False}
    entries = health.get("all_models_loaded") if isinstance(health, dict) else None
    if not isinstance(entries, list):
        out["note"] = "health has no all_models_loaded list"
        return out
    entry = next((e for e in entries if isinstance(e, dict) and e.get("model_name") == model), None)
    if entry is None:
        loaded = [e.get("model_name") for e in entries if isinstance(e, dict)]
        out["note"] = f"{model} is not among the loaded models {loaded}"
        return out
    opts = entry.get("recipe_options") if isinstance(entry.get("recipe_options"), dict) else {}
    args = str(opts.get("llamacpp_args") or "")
    launch = str(entry.get("launch_command") or "")
    out.update(
        llamacpp_args=args,
        launch_command=launch,
        pid=entry.get("pid"),
        backend_url=entry.get("backend_url"),
    )
    seen_args = _flag_value(args, "--spec-draft-n-max")
    seen_launch = _flag_value(launch, "--spec-draft-n-max") if launch else None
    type_launch = _flag_value(launch, "--spec-type") if launch else None
    problems = []
    if seen_args != str(k):
        problems.append(f"llamacpp_args has --spec-draft-n-max {seen_args}")
    if launch and seen_launch != str(k):
        problems.append(f"launch_command has --spec-draft-n-max {seen_launch}")
    if launch and type_launch is not None and spec_type and type_launch != spec_type:
        problems.append(f"launch_command has --spec-type {type_launch}")
    if problems:
        out["note"] = f"asked for k={k}, but " + "; ".join(problems)
    else:
        out["confirmed"] = True
    return out


class LemonadeBackend(OpenAICompatBackend):
    kind = "lemonade"
    chat_path = "/api/v1/chat/completions"
    health_paths = ("/api/v1/health",)
    metrics_path = "/metrics"  # Lemonade >= 10.7.0: lemonade_llamacpp_spec_decode_*
    load_path = "/api/v1/load"
    status_path = "/api/v1/health"
    # Lemonade passes llama-server's `timings` through on non-streamed replies; whether its
    # streamed replies keep them is not documented, and the draft counters must not be lost
    streams = False

    def __init__(
        self, profile: Profile, *, url: str | None = None, draft_channel: str = "reload"
    ) -> None:
        super().__init__(profile, url=url, draft_channel=draft_channel)
        self.loaded_k: int | None = None
        self.reloads = 0
        self._mode_reloads: list[dict[str, Any]] = []
        self._adaptive_warned = False

    def prepare_mode(self, mode: str, k: int | None) -> None:
        super().prepare_mode(mode, k)
        self._mode_reloads = []
        if self.draft_channel != "reload":
            return
        if k is None:
            self.notice(
                "warning",
                f"{mode}: adaptive mode on the reload channel: every change of k reloads the "
                "model in Lemonade (seconds each, not counted in step latency; the first "
                "request after a reload may be slower)",
            )
            return
        self.ensure_k(k)

    def ensure_k(self, k: int) -> None:
        if self.draft_channel != "reload" or k == self.loaded_k:
            return
        self.reload(k)

    def reload(self, k: int) -> dict[str, Any]:
        """POST /api/v1/load with the draft length, then confirm it through /api/v1/health."""
        b = self.profile.backend
        args = llamacpp_args(b.spec_type, k, b.n_min)
        t0 = time.perf_counter()
        try:
            resp = self.client().post(
                self.load_path,
                json={"model_name": self.model, "llamacpp_args": args},
                timeout=b.reload_timeout_s,
            )
        except httpx.HTTPError as e:
            raise DraftChannelError(
                f"reload of {self.model} with k={k} failed at {self.url}{self.load_path}: "
                f"{e.__class__.__name__}: {e}"
            ) from e
        if resp.status_code >= 400:
            raise DraftChannelError(
                f"Lemonade refused the reload of {self.model} with llamacpp_args {args!r}: "
                f"HTTP {resp.status_code}: {resp.text[:300]}"
            )
        reload_ms = (time.perf_counter() - t0) * 1000.0
        try:
            health = self.client().get(self.status_path, timeout=10.0).json()
        except (httpx.HTTPError, ValueError) as e:
            health = None
            proof: dict[str, Any] = {
                "k": k,
                "confirmed": False,
                "note": f"health unreadable after reload ({e})",
            }
        if health is not None:
            proof = confirm_loaded(health, self.model, b.spec_type, k)
        proof.update(requested_args=args, reload_ms=round(reload_ms, 1))
        self.reloads += 1
        self.loaded_k = k
        self._mode_reloads.append(proof)
        if proof["confirmed"]:
            self.notice(
                "info",
                f"Lemonade reloaded {self.model} with {args} "
                f"({reload_ms / 1000:.1f} s); confirmed by /api/v1/health",
            )
        else:
            self.notice(
                "warning", f"Lemonade reload NOT confirmed for k={k}: {proof.get('note', '')}"
            )
        return proof

    def mode_evidence(self) -> dict[str, Any]:
        if self.draft_channel != "reload":
            return {}
        reloads = self._mode_reloads
        ev: dict[str, Any] = {"reloads": len(reloads)}
        if reloads:
            ev["confirmed"] = all(r["confirmed"] for r in reloads)
            ev["last_reload"] = reloads[-1]
            bad = [r for r in reloads if not r["confirmed"]]
            if bad:
                ev["note"] = bad[0].get("note", "reload not confirmed")
        return ev
