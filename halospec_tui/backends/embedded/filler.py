"""The reply text: filler of the prompt's category, one piece per generated token.

No model runs, so a reply is a few fixed sentences per category, cut into word and
punctuation pieces. Where it starts is drawn from ``(seed, prompt text)`` by the caller's
generator: like greedy decoding, the text does not depend on the draft length.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

_FILLER: dict[str, tuple[str, ...]] = {
    "prose": (
        "Speculative decoding is a technique in which a small draft model proposes several "
        "tokens that the large target model then verifies in a single forward pass.",
        "The target keeps the longest prefix it agrees with and adds one token of its own, "
        "so the output is unchanged while fewer sequential passes are needed.",
        "When the draft guesses well, several tokens arrive for the price of one step.",
        "When it guesses badly, the extra drafting is wasted work and latency grows.",
        "The best draft length therefore depends on the content and on the hardware load.",
    ),
    "code": (
        "def draft_tokens(model, context, k):\n",
        "    tokens = []\n",
        "    for _ in range(k):\n",
        "        token = model.predict(context + tokens)\n",
        "        tokens.append(token)\n",
        "    return tokens\n",
        "\n",
        "def verify(target, context, draft):\n",
        "    accepted = 0\n",
        "    for i, token in enumerate(draft):\n",
        "        if target.predict(context + draft[:i]) != token:\n",
        "            break\n",
        "        accepted += 1\n",
        "    return accepted\n",
    ),
    "math": (
        "Let the acceptance rate be a = 0.8 and the draft length be k = 4.",
        "The expected number of tokens per step is (1 - a^(k+1)) / (1 - a).",
        "So E = (1 - 0.8^5) / 0.2 = (1 - 0.32768) / 0.2 = 3.3616.",
        "With a draft cost of c = 0.1 per token, the speedup is E / (c * k + 1).",
        "That gives 3.3616 / 1.4 = 2.4011, so the answer is about 2.4.",
    ),
    "json": (
        '{"name": "speculative_decoding", "draft_length": 4, "acceptance": 0.8, ',
        '"tokens": ["the", "draft", "model", "proposes"], "verified": true, ',
        '"steps": [{"k": 4, "accepted": 3}, {"k": 4, "accepted": 4}], ',
        '"target": {"model": "Qwen3-0.6B", "device": "gpu"}, "speedup": 2.4}',
    ),
}
_PIECE_RE = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")
_PIECES: dict[str, list[list[str]]] = {
    cat: [_PIECE_RE.findall(s if s[-1].isspace() else s + " ") for s in sentences]
    for cat, sentences in _FILLER.items()
}


def filler_pieces(category: str, n: int, rng: np.random.Generator) -> list[str]:
    """`n` text pieces (one per token) of the category's filler, starting at a random line."""
    lines = _PIECES.get(category, _PIECES["prose"])
    i = int(rng.integers(len(lines)))
    out: list[str] = []
    while len(out) < n:
        out.extend(lines[i % len(lines)])
        i += 1
    return out[:n]
