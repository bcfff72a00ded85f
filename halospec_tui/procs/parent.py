"""The child side of a process lifetime: is the harness that started us still there?

Imports only `os`, so the CPU burners (which check it every few milliseconds and must start
light) share it with every other child instead of keeping a copy.
"""

from __future__ import annotations

import os

POLL_S = 0.2  # how often a watching child (or the guard) looks for its parent


def parent_gone(parent_pid: int) -> bool:
    """True when `parent_pid` is no longer our parent (we were re-parented) or has exited."""
    if os.getppid() != parent_pid:
        return True
    try:
        os.kill(parent_pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
