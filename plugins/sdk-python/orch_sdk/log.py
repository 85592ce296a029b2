"""Step log lines and progress; the host tags each line with run and step and masks secrets.

`print()` to stdout or stderr also ends up in the step log. Outside a component (tests on
plain Python) lines go to stderr.
"""

import sys

try:
    from wit_world.imports import log as _host
except ImportError:  # plain Python, no bindings
    _host = None


def log(level: str, message) -> None:
    """Write one line at `level`: trace, debug, info, warn or error."""
    if _host is None:
        print(f"[{level}] {message}", file=sys.stderr)
        return
    _host.log(getattr(_host.Level, level.upper()), str(message))


def trace(message) -> None:
    """Log at trace level."""
    log("trace", message)


def debug(message) -> None:
    """Log at debug level."""
    log("debug", message)


def info(message) -> None:
    """Log at info level."""
    log("info", message)


def warn(message) -> None:
    """Log at warn level."""
    log("warn", message)


def error(message) -> None:
    """Log at error level."""
    log("error", message)


def progress(current: int, total: int | None = None, message: str = "") -> None:
    """Report progress: `current` of `total` units (None: total unknown)."""
    if _host is None:
        print(f"[progress] {current}/{total if total is not None else '?'} {message}",
              file=sys.stderr)
        return
    _host.progress(int(current), None if total is None else int(total), str(message))
