"""Secrets out of every text the harness writes or shows.

A server may echo the API key back in an error (`invalid api key: Bearer sk-...`), and that
text would reach results.csv, responses.jsonl, summary.json, notices and headless lines.
`scrub` replaces the values registered with `add_secret` (the backend registers the key it
read from `backend.api_key_env`) and anything shaped like a bearer token, an `sk-` key or an
`api_key=...` pair. Backends scrub what a server sends as it enters the harness; the writers
and printers scrub again before anything leaves it.

A leaf: it imports nothing of ours, so every layer can use it.
"""

from __future__ import annotations

import re
import threading
from typing import Any

MASK = "***"
MIN_SECRET = 4  # shorter values would mask ordinary words

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # an Authorization value: "Bearer abc.def-123" (8+ token characters, so "bearer bonds" stays)
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1" + MASK),
    # OpenAI-style secret keys: sk-..., sk-proj-...
    (re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"), "sk-" + MASK),
    # key = value, "api_key": "value", x-api-key: value, access_token=value, secret: value
    (
        re.compile(
            r"(?i)(\b(?:api[_-]?key|x-api-key|access[_-]?token|secret|password)\b"
            r"[\"']?\s*[:=]\s*[\"']?)([^\s\"',;}&]{4,})"
        ),
        r"\1" + MASK,
    ),
)

# a text with none of the words a pattern above starts with skips them (one search, not three)
_MAYBE = re.compile(r"(?i)bearer|sk-|key|token|secret|password")
_secrets: tuple[str, ...] = ()  # longest first, so no part of a longer one is left over
_lock = threading.Lock()


def add_secret(value: str | None) -> None:
    """Mask `value` wherever it appears from now on (process-wide: a key is secret everywhere)."""
    global _secrets
    if value and len(value) >= MIN_SECRET:
        with _lock:
            _secrets = tuple(sorted({*_secrets, value}, key=len, reverse=True))


def scrub(text: str) -> str:
    """`text` with every registered secret and every token-shaped value replaced by ***."""
    if not text:
        return text
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    if _MAYBE.search(text) is None:
        return text
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def scrub_obj(obj: Any) -> Any:
    """`obj` (decoded JSON: dicts, lists, strings) with every string value scrubbed."""
    if isinstance(obj, str):
        return scrub(obj)
    if isinstance(obj, dict):
        return {k: scrub_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [scrub_obj(v) for v in obj]
    return obj
