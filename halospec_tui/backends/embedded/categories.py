"""The content category of a prompt (code, prose, math, json) and a rough token count.

The category picks the acceptance α a request meets and the filler its reply is made of.
Plain regular expressions, no numpy: the package exports `classify` without loading the
engine's numerics.
"""

from __future__ import annotations

import re

CATEGORIES = ("code", "prose", "math", "json")

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_JSON_RE = re.compile(r"\bjson\b|\{\s*\"", re.IGNORECASE)
_CODE_RE = re.compile(
    r"```|\b(code|coding|function|functions|python|javascript|typescript|java|rust|golang|"
    r"c\+\+|c#|sql|regex|bash|shell script|script|program|programming|implement|"
    r"refactor|compile|compiler|class|method|snippet|api|unit test|debug)\b"
    r"|\bdef\s+\w+\s*\(|\bfn\s+\w+\s*\(|=>|\breturn\b",
    re.IGNORECASE,
)
_MATH_RE = re.compile(
    r"\b(solve|compute|calculate|calculation|equation|equations|arithmetic|algebra|integral|"
    r"derivative|sum of|product of|how many|how much|percent|percentage|probability|"
    r"prime|factorial|multiply|divide|divided|times|square root|math|mathematics)\b"
    r"|\d\s*[-+*/^×÷=]\s*\d",
    re.IGNORECASE,
)


def classify(text: str) -> str:
    """The content category of a prompt, by the first rule that matches its text.

    1. ``json``: the word JSON (any case) or a JSON object opening ``{"``.
    2. ``code``: a code fence (```), a programming word (code, function, Python,
       JavaScript, SQL, regex, script, program, implement, refactor, class, method,
       API, debug, ...), or code-like text (``def f(``, ``fn f(``, ``=>``, ``return``).
    3. ``math``: solve, compute, calculate, equation, arithmetic, algebra, integral,
       derivative, "sum of", "how many", percent, probability, prime, ..., or a digit,
       an operator and a digit (``12 * 7``, ``3+4=``).
    4. ``prose``: everything else.

    Words match whole (``decoding`` is not ``code``), case-insensitively.
    """
    if _JSON_RE.search(text):
        return "json"
    if _CODE_RE.search(text):
        return "code"
    if _MATH_RE.search(text):
        return "math"
    return "prose"


def count_tokens(text: str) -> int:
    """A rough token count: words and punctuation marks."""
    return len(_TOKEN_RE.findall(text))
