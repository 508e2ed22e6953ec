"""Errors that reach the user as one clear message and exit code 2.

Anything raised as a `UserError` is the user's to fix (a recipe key, a data
file, a path); the CLI prints its message without a traceback. Everything else
is our bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input: printed as one message, exit code 2."""

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        super().__init__(message)

    def render(self) -> str:
        if not self.problems:
            return str(self)
        lines = [str(self)] + [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class RecipeError(UserError):
    """The recipe does not validate; `problems` lists every one, with its YAML path and line."""


class TrainingError(Exception):
    """Training diverged (NaN/inf loss) or failed; the stage is marked failed, finished work kept."""
