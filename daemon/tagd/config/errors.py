"""The one error a config file that cannot be used raises."""

from __future__ import annotations

from collections.abc import Sequence


class ConfigError(ValueError):
    """A configuration file that cannot be used as it is.

    ``str()`` is one line, for logs and the service's status; ``lines`` has one
    line per problem, each naming the file, for a person reading a terminal.
    """

    def __init__(self, message: str, lines: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.lines = list(lines) or [message]

    @classmethod
    def listing(cls, origin: str, problems: Sequence[str]) -> ConfigError:
        """Every problem found in `origin` (a file name, or "config")."""
        return cls(f"{origin}: " + "; ".join(problems), [f"{origin}: {p}" for p in problems])
