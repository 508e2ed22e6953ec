"""data_prep's own error: a dataset the user must fix (missing file, too many malformed rows, ...).

data_prep is a library on its own and imports nothing from posttrain; the
posttrain CLI maps `DataPrepError` to one message and exit code 2. It is a
`ValueError` so plain library callers can catch it without knowing this module.
"""

from __future__ import annotations


class DataPrepError(ValueError):
    """A dataset cannot be loaded or curated; `problems` lists the details (file:line: reason)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        super().__init__(message)

    def render(self) -> str:
        """The message with one indented line per problem, as the CLI prints it."""
        if not self.problems:
            return str(self)
        return "\n".join([str(self)] + [f"  - {p}" for p in self.problems])
