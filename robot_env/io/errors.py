"""Errors in the caller's language: the library names its own parameters, the command line its flags.

A `ParamError` carries the name of the parameter it is about and a message template with a
``{name}`` placeholder. ``str(err)`` fills in the parameter name, as a Python caller passed it
(``n must be at least 1, got 0.``); the command line calls `ParamError.render` with the flag it
maps that parameter to (``--n must be at least 1, got 0.``).
"""

from __future__ import annotations

__all__ = ["ParamError"]


class ParamError(ValueError):
    """A bad value of one named parameter. ``param`` is the name; ``template`` the message, with ``{name}``."""

    def __init__(self, param: str, template: str) -> None:
        self.param = param
        self.template = template if "{name}" in template else "{name}: " + template
        super().__init__(self.render(param))

    def render(self, name: str) -> str:
        """The message with ``name`` (a flag, say) in place of the parameter's name."""
        return self.template.replace("{name}", name)
