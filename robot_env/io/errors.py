"""The user's mistakes, as one family of errors, in the caller's language.

`ArmlabError` is what the library raises for a mistake of the person running it -- a bad setting,
a file that is not what it should be, a path that is missing or cannot be written, a device or
renderer this machine lacks. ``armlab`` answers every `ArmlabError` with one sentence on stderr
and exit code 2; any other exception is a bug in armlab and keeps its traceback (exit code 1).

Each subclass also derives from the built-in exception it replaced (`ConfigError` and `DataError`
are ``ValueError``; `PathError` an ``OSError``, `MissingPathError` a ``FileNotFoundError``;
`DeviceError` a ``RuntimeError``), so Python callers that caught those keep working.

A `ParamError` carries the name of the parameter it is about and a message template with a
``{name}`` placeholder. ``str(err)`` fills in the parameter name, as a Python caller passed it
(``n must be at least 1, got 0.``); the command line calls `ParamError.render` with the flag it
maps that parameter to (``--n must be at least 1, got 0.``).
"""

from __future__ import annotations

import os

__all__ = ["ArmlabError", "ConfigError", "DataError", "DeviceError", "MissingPathError", "ParamError", "PathError",
           "UnwritablePathError", "unwritable"]


class ArmlabError(Exception):
    """A mistake of the user's (not a bug in armlab): ``armlab`` prints its one sentence and exits with 2."""


class ConfigError(ArmlabError, ValueError):
    """A bad setting: a value out of range, an unknown name (robot, env id, algorithm, sampler, condition)."""


class DataError(ArmlabError, ValueError):
    """A file or folder armlab reads is not what it should be: corrupt, truncated, of another kind or version."""


class PathError(ArmlabError, OSError):
    """A path armlab needs is missing, of the wrong kind, or cannot be written."""

    def __init__(self, message: str) -> None:  # one sentence, not OSError's (errno, strerror) pair
        super().__init__(message)


class MissingPathError(PathError, FileNotFoundError):
    """An input path that does not exist."""


class UnwritablePathError(PathError, PermissionError):
    """An output path armlab cannot create or write (no permission, a file where a folder should be, ...)."""


class DeviceError(ArmlabError, RuntimeError):
    """A device or renderer this machine does not offer (a CUDA GPU, EGL, a display)."""


class ParamError(ConfigError):
    """A bad value of one named parameter. ``param`` is the name; ``template`` the message, with ``{name}``."""

    def __init__(self, param: str, template: str) -> None:
        self.param = param
        self.template = template if "{name}" in template else "{name}: " + template
        super().__init__(self.render(param))

    def render(self, name: str) -> str:
        """The message with ``name`` (a flag, say) in place of the parameter's name."""
        return self.template.replace("{name}", name)


def unwritable(path: os.PathLike | str, exc: OSError) -> UnwritablePathError:
    """The `UnwritablePathError` for an ``OSError`` met while creating or writing ``path``."""
    why = exc.strerror or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
    return UnwritablePathError(f"cannot write {str(path)!r}: {why.lower()}{where}; choose another output path.")
