"""An Ollama Modelfile for an exported GGUF: FROM, ADAPTER, the chat template in Go syntax, stop tokens.

The Go template is derived from a Jinja chat template — the one the GGUF file
carries (`tokenizer.chat_template`, what llama.cpp's converter wrote), or the
tokenizer's own — by rendering it around marker strings and reading off what
wraps each role (ChatML, Llama 3 and similar role-wrapping formats). The
result is then rendered with `go_template.render` on sample conversations and
must equal the tokenizer's `apply_chat_template` exactly, or the export stops
with a clear message.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrain.errors import UserError
from posttrain.export.go_template import render
from posttrain.serving import engines

_S, _U1, _A1, _U2 = "\x01SYS\x01", "\x01USER1\x01", "\x01ASSISTANT1\x01", "\x01USER2\x01"

SAMPLE_CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a colour."}],
    [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello. How can I help?"},
        {"role": "user", "content": "Count to three.\nThen stop."},
    ],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ],
]


def _chat(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool, template: str | None = None) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt,
                                         chat_template=template)


def _between(text: str, *markers: str) -> list[str]:
    """The text before, between and after `markers`, which must appear in order."""
    parts, rest = [], text
    for marker in markers:
        head, found, rest = rest.partition(marker)
        if not found:
            raise ValueError(f"marker {marker!r} missing")
        parts.append(head)
    return [*parts, rest]


def _strip_prefix(text: str, prefix: str) -> str:
    if not text.startswith(prefix):
        raise ValueError(f"{text!r} does not start with {prefix!r}")
    return text[len(prefix) :]


def go_template(tokenizer: Any, chat_template: str | None = None) -> tuple[str, list[str]]:
    """`chat_template` (default: the tokenizer's) as an Ollama Go template, and the stop strings.

    UserError if it is not expressible, or if the Go template renders anything but what the tokenizer's own
    chat template renders.
    """
    try:
        template, stops = _derive(tokenizer, chat_template)
        for conversation in SAMPLE_CONVERSATIONS:
            if render(template, conversation) != _chat(tokenizer, conversation, True):
                raise ValueError(f"renders differently from the tokenizer's chat template for {conversation}")
    except ValueError as exc:
        raise UserError(
            "the tokenizer's chat template is not one posttrain can write as an Ollama template "
            f"(role-wrapping formats such as ChatML and Llama 3 are): {exc}"
        ) from exc
    return template, stops


def _derive(tokenizer: Any, source: str | None = None) -> tuple[str, list[str]]:
    """Read the wrappers off renders of marker conversations.

    system+user+assistant+user renders as
    preamble open_sys S close_sys open_user U1 close_user open_asst A1 close_asst open_user U2 close_user generation;
    renders of a lone system, a lone user and user+assistant message pin down the closings, and a
    lone user message shows the default system block the template adds when there is none.
    """
    full = _chat(tokenizer, [
        {"role": "system", "content": _S}, {"role": "user", "content": _U1},
        {"role": "assistant", "content": _A1}, {"role": "user", "content": _U2},
    ], True, source)
    p0, p1, p2, p3, p4 = _between(full, _S, _U1, _A1, _U2)
    _, close_system = _between(_chat(tokenizer, [{"role": "system", "content": _S}], False, source), _S)
    lone_user_head, close_user = _between(_chat(tokenizer, [{"role": "user", "content": _U1}], False, source), _U1)
    close_assistant = _between(_chat(tokenizer, [
        {"role": "user", "content": _U1}, {"role": "assistant", "content": _A1},
    ], False, source), _A1)[-1]
    open_user = _strip_prefix(p1, close_system)
    open_assistant = _strip_prefix(p2, close_user)
    if p3 != close_assistant + open_user:
        raise ValueError("an assistant turn is not followed by the plain user wrapper")
    generation = _strip_prefix(p4, close_user)
    open_system = open_user.replace("user", "system")
    if not p0.endswith(open_system):
        raise ValueError("the system wrapper is not the user wrapper with the role name changed")
    preamble = p0[: len(p0) - len(open_system)]
    default_system = _strip_prefix(lone_user_head, preamble)[: len(lone_user_head) - len(preamble) - len(open_user)]
    if not lone_user_head.endswith(open_user):
        raise ValueError("a lone user turn is wrapped differently")
    pieces = [preamble, open_system, close_system, open_user, close_user, open_assistant, close_assistant,
              generation, default_system]
    if any("{{" in p or '"""' in p for p in pieces):
        raise ValueError("the template's literal text contains '{{' or '\"\"\"'")

    def turn(role: str, opening: str, closing: str) -> str:
        return f'eq .Role "{role}" }}}}{opening}{{{{ .Content }}}}{closing}'

    template = preamble
    if default_system:
        template += f'{{{{ if ne (index .Messages 0).Role "system" }}}}{default_system}{{{{ end }}}}'
    template += (
        "{{ range .Messages }}{{ if " + turn("system", open_system, close_system)
        + "{{ else if " + turn("user", open_user, close_user)
        + "{{ else if " + turn("assistant", open_assistant, close_assistant)
        + "{{ end }}{{ end }}" + generation
    )
    stops = [s for s in dict.fromkeys([close_assistant.strip(), tokenizer.eos_token or ""]) if s]
    return template, stops


def write_modelfile(
    out_dir: Path, *, model_gguf: Path, adapter_gguf: Path | None, template: str, stops: list[str], name: str,
    filename: str = "Modelfile",
) -> dict[str, Any]:
    """Write `Modelfile` (paths relative to it) and return the manifest with the `ollama create` command."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"FROM {_relative(model_gguf, out_dir)}"]
    if adapter_gguf is not None:
        lines.append(f"ADAPTER {_relative(adapter_gguf, out_dir)}")
    lines.append(f'TEMPLATE """{template}"""')
    lines += [f"PARAMETER stop {json.dumps(stop)}" for stop in stops]
    lines += [f"PARAMETER {name} {value:g}" for name, value in engines.NO_PENALTY_FIELDS["ollama"].items()]
    modelfile = out_dir / filename
    modelfile.write_text("\n".join(lines) + "\n")
    command = ["ollama", "create", name, "-f", str(modelfile)]
    return {"engine": "ollama", "modelfile": str(modelfile), "name": name, "command": command,
            "command_line": shlex.join(command), "run": shlex.join(["ollama", "run", name])}


def _relative(path: Path, start: Path) -> str:
    # Ollama resolves FROM/ADAPTER paths against the Modelfile's folder, so the export folder can move.
    return os.path.relpath(Path(path).resolve(), start.resolve())


@dataclass
class Modelfile:
    """What a Modelfile says, as Ollama reads it."""

    from_: str = ""
    adapters: list[str] = field(default_factory=list)
    template: str | None = None
    system: str | None = None
    parameters: list[tuple[str, str]] = field(default_factory=list)


_INSTRUCTION = re.compile(r"^(FROM|ADAPTER|TEMPLATE|SYSTEM|PARAMETER|LICENSE|MESSAGE)\s+(.*)$", re.I | re.S)


def read_modelfile(path: Path) -> Modelfile:
    """Parse a Modelfile: one instruction per line; a `\"\"\"...\"\"\"` value may span lines."""
    text = path.read_text()
    result = Modelfile()
    pos = 0
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end == -1 else end
        line, line_start, pos = text[pos:end], pos, end + 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _INSTRUCTION.match(line.strip())
        if not match:
            raise UserError(f"{path}: not a Modelfile instruction: {line!r}")
        keyword, value = match.group(1).upper(), match.group(2)
        if value.startswith('"""'):
            start = text.index('"""', line_start) + 3
            close = text.find('"""', start)
            if close == -1:
                raise UserError(f'{path}: the \"\"\" value of {keyword} is never closed')
            value = text[start:close]
            end = text.find("\n", close)
            pos = len(text) if end == -1 else end + 1
        _apply(result, keyword, value)
    return result


def _apply(result: Modelfile, keyword: str, value: str) -> None:
    if keyword == "FROM":
        result.from_ = value.strip()
    elif keyword == "ADAPTER":
        result.adapters.append(value.strip())
    elif keyword == "TEMPLATE":
        result.template = value
    elif keyword == "SYSTEM":
        result.system = value
    elif keyword == "PARAMETER":
        name, _, arg = value.strip().partition(" ")
        arg = arg.strip()
        result.parameters.append((name, json.loads(arg) if arg.startswith('"') else arg))
