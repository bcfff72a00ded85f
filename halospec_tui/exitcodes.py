"""The process exit statuses of every halospec-tui command, in one place.

README's "Exit codes" and the tests read the same numbers: a script can tell a bad profile
(2) from a server that is down (3) from an interruption (130, 143) without parsing text.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # done (or the user quit with q)
    ERROR = 1  # an internal error: a bug, with its traceback
    INPUT = 2  # bad input: profile, arguments, results file; one line says what and where
    SERVER = 3  # the server did not answer its health check (nothing was measured)
    INTERRUPTED = 130  # Ctrl+C (128 + SIGINT), or SIGTERM headless: what finished is kept
    BROKEN_PIPE = 141  # stdout's reader left (`| head`): 128 + SIGPIPE, what a shell expects
    TERMINATED = 143  # SIGTERM in the monitor (128 + SIGTERM)
