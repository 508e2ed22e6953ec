"""Render the small subset of Go's text/template that posttrain writes into Ollama Modelfiles.

Ollama formats prompts with Go templates; posttrain emits only these forms, so
this renderer can prove that an exported template produces the same prompt
text as the tokenizer's Jinja chat template:

    text   {{ .Role }}   {{ .Content }}   {{ range .Messages }}...{{ end }}
    {{ if COND }}...{{ else if COND }}...{{ else }}...{{ end }}
    COND:  eq|ne OPERAND "literal"    OPERAND: .Role | (index .Messages 0).Role

`{{-` and `-}}` trim the whitespace beside an action, as in Go.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.S)
_COND = re.compile(r'^(eq|ne) (\.Role|\(index \.Messages 0\)\.Role) ("(?:[^"\\]|\\.)*")$')


class TemplateError(ValueError):
    """The template uses Go template features outside the supported subset."""


@dataclass
class _Block:
    kind: str  # "root", "range", "if"
    branches: list[tuple[str | None, list[Any]]] = field(default_factory=list)


def parse(template: str) -> list[Any]:
    """Parse into nested nodes: str (text), ("field", name), _Block for range/if."""
    root = _Block("root", [(None, [])])
    stack = [root]
    pos = 0
    pieces: list[tuple[str, str]] = []
    for match in _ACTION.finditer(template):
        text = template[pos : match.start()]
        if match.group(1):
            text = text.rstrip()
        if pieces and pieces[-1][0] == "trim_next":
            pieces.pop()
            text = text.lstrip()
        pieces.append(("text", text))
        pieces.append(("action", match.group(2)))
        if match.group(3):
            pieces.append(("trim_next", ""))
        pos = match.end()
    tail = template[pos:]
    if pieces and pieces[-1][0] == "trim_next":
        pieces.pop()
        tail = tail.lstrip()
    pieces.append(("text", tail))

    for kind, value in pieces:
        body = stack[-1].branches[-1][1]
        if kind == "text":
            if value:
                body.append(value)
        elif value in (".Role", ".Content"):
            body.append(("field", value[1:]))
        elif value == "range .Messages":
            block = _Block("range", [(None, [])])
            body.append(block)
            stack.append(block)
        elif value.startswith("if "):
            block = _Block("if", [(_condition(value[3:]), [])])
            body.append(block)
            stack.append(block)
        elif value.startswith("else if ") and stack[-1].kind == "if":
            stack[-1].branches.append((_condition(value[8:]), []))
        elif value == "else" and stack[-1].kind == "if":
            stack[-1].branches.append(("true", []))
        elif value == "end" and len(stack) > 1:
            stack.pop()
        else:
            raise TemplateError(f"unsupported template action {{{{ {value} }}}}")
    if len(stack) != 1:
        raise TemplateError("template ends inside an unclosed {{ if }} or {{ range }}")
    return root.branches[0][1]


def _condition(text: str) -> str:
    if not _COND.match(text.strip()):
        raise TemplateError(f"unsupported condition {text!r}")
    return text.strip()


def render(template: str, messages: list[dict[str, str]]) -> str:
    """The prompt text Ollama would build from `messages` with this template."""
    out: list[str] = []
    _emit(parse(template), {"Role": "", "Content": ""}, messages, out)
    return "".join(out)


def _emit(nodes: list[Any], dot: dict[str, str], messages: list[dict[str, str]], out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, tuple):
            out.append(dot[node[1]])
        elif node.kind == "range":
            for message in messages:
                _emit(node.branches[0][1], {"Role": message["role"], "Content": message["content"]}, messages, out)
        else:
            for condition, body in node.branches:
                if condition == "true" or _holds(condition, dot, messages):
                    _emit(body, dot, messages, out)
                    break


def _holds(condition: str, dot: dict[str, str], messages: list[dict[str, str]]) -> bool:
    op, operand, literal = _COND.match(condition).groups()  # type: ignore[union-attr]
    value = dot["Role"] if operand == ".Role" else (messages[0]["role"] if messages else "")
    return (value == json.loads(literal)) == (op == "eq")
