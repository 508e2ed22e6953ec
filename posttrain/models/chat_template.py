"""`model.chat_template`: a shipped template by name, or a recipe's own .jinja file, with the tokens it needs.

A template declares the special tokens it writes and its end-of-turn token in a Jinja comment on its first
line, `{#- posttrain: special_tokens <|im_start|> <|im_end|>; end_of_turn <|im_end|> -#}`, so the shipped
files and a user's file say it the same way and nothing keeps a second list in sync. A file without the
comment adds no tokens and keeps the tokenizer's end-of-sequence token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from posttrain.errors import UserError

TEMPLATES_DIR = Path(__file__).with_name("templates")
SHIPPED = tuple(sorted(p.stem for p in TEMPLATES_DIR.glob("*.jinja")))
"""The names `model.chat_template` takes besides a file: chatml, gemma, llama3, mistral."""

_HEADER = re.compile(r"\{#-?\s*posttrain:\s*special_tokens\s+(?P<tokens>[^;]*?)\s*;\s*end_of_turn\s+(?P<eot>\S+)\s*-?#\}")


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    """The shipped name, or the file's path as the recipe wrote it."""
    text: str
    special_tokens: tuple[str, ...]
    """Tokens the template writes that must each be one token (added to a tokenizer that lacks them)."""
    end_of_turn: str | None
    """The token that ends an assistant turn: the model's eos and generation stop token (None: the tokenizer's)."""


def parse_template(name: str, text: str) -> ChatTemplate:
    """`text` with the tokens its `posttrain:` header comment declares (none without one)."""
    header = _HEADER.search(text.split("\n", 1)[0])
    if header is None:
        return ChatTemplate(name, text, (), None)
    return ChatTemplate(name, text, tuple(header["tokens"].split()), header["eot"])


def template_path(value: str, base_dir: Path | None) -> Path:
    """Where `value` (a shipped name or a .jinja path, relative to the recipe's folder) is read from."""
    if value in SHIPPED:
        return TEMPLATES_DIR / f"{value}.jinja"
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def template_problem(value: str, base_dir: Path | None) -> str | None:
    """Why `value` is no usable `model.chat_template` (None when it is): what the recipe check says."""
    if value in SHIPPED:
        return None
    if not value.endswith((".jinja", ".j2")):
        return f"unknown chat template {value!r}: use one of {', '.join(SHIPPED)} or a .jinja file"
    path = template_path(value, base_dir)
    if not path.is_file():
        return f"chat template file {str(path)!r} does not exist (relative paths are read from the recipe's folder)"
    try:
        _compile(path.read_text(encoding="utf-8"))
    except Exception as exc:  # jinja2's TemplateSyntaxError and friends: said once, at validate
        return f"chat template file {str(path)!r} is not valid Jinja: {exc}"
    return None


def load_chat_template(value: str, base_dir: Path | None) -> ChatTemplate:
    problem = template_problem(value, base_dir)
    if problem:
        raise UserError(f"model.chat_template: {problem}")
    return parse_template(value, template_path(value, base_dir).read_text(encoding="utf-8"))


def _compile(text: str) -> None:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # transformers renders chat templates with these extensions; a template using {% generation %} must parse.
    ImmutableSandboxedEnvironment(extensions=["jinja2.ext.loopcontrols"]).parse(
        text.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    )
