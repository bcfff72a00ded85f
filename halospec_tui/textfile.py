"""Text from outside: a file a user handed us (a profile, a prompt suite, a results CSV) read
bounded, decoded, and refused in one line when it is not text; and any text made one line.

Each reader used to call `read_text()` and handle some of what can go wrong; a binary file, a
folder, /dev/zero or a file in another encoding reached a traceback or filled the memory.
Here every such file gets the same one-line answer: the path, what is wrong, what was
expected.
"""

from __future__ import annotations

from pathlib import Path

SNIFF = 64 * 1024  # a binary file shows a NUL byte within its first 64 KiB


class TextFileError(ValueError):
    """The file cannot be used as text; the message is one line starting with the path."""


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def read_text(path: str | Path, *, what: str, limit: int) -> str:
    """The file's text (UTF-8; a byte-order mark is dropped), or TextFileError: not found, a
    folder, unreadable, larger than `limit` bytes, binary (a NUL byte), not UTF-8. `what` is
    what the file should have been ("a TOML profile"), for the message."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            head = f.read(SNIFF)
            if b"\x00" in head:
                raise TextFileError(f"{p}: a binary file (expected {what}, UTF-8 text)")
            data = head + f.read(max(0, limit + 1 - len(head)))
    except FileNotFoundError:
        raise TextFileError(f"{p}: file not found (expected {what})") from None
    except IsADirectoryError:
        raise TextFileError(f"{p}: a folder (expected {what})") from None
    except OSError as e:
        raise TextFileError(f"{p}: cannot read ({e.strerror or e})") from None
    if len(data) > limit:
        raise TextFileError(f"{p}: larger than {_size(limit)} (expected {what})")
    if b"\x00" in data:
        raise TextFileError(f"{p}: a binary file (expected {what}, UTF-8 text)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TextFileError(
            f"{p}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}; "
            f"expected {what})"
        ) from None


def one_line(text: str) -> str:
    """`text` with anything unprintable (a newline in a file name, an argument or a server's
    model name) escaped: a refusal stays the one line it promises, a comment stays a comment."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
