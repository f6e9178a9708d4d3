"""The one base of every error a user can act on (a bad spec, a missing or damaged artifact, an
unreachable model, a source that refuses us): its message is one line that names the remedy, and
`exit_code` is what `geosolver` exits with. The CLI catches this type once and prints no traceback;
anything else is a bug and keeps its traceback.

Errors that are outcomes rather than failures (an image rejected with its reason, a fetch that will be
retried) are not GeosolverErrors: they are caught where they happen and recorded as rows."""

from __future__ import annotations


class GeosolverError(Exception):
    """A failure the user can act on; `exit_code` 1 unless a subclass says otherwise."""

    exit_code = 1


class UsageError(GeosolverError):
    """The command was asked for something it cannot be (a bad spec, an unknown region): exit 2, like
    argparse's own usage errors."""

    exit_code = 2


def first_line(exc: BaseException) -> str:
    """An exception's first line, for a one-line message that wraps it (its type's name when it says nothing)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
