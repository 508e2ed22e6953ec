"""Read a recipe file into a validated `Recipe`, or fail with every problem at once.

Problems carry their YAML path and `file:line:col`, found by walking the
ruamel round-trip tree (which remembers where each key was written).
"""

from __future__ import annotations

import difflib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.representer import SafeRepresenter

from posttrain.errors import RecipeError
from posttrain.recipe.export_checks import check_export
from posttrain.recipe.family_checks import check_family
from posttrain.recipe.launch_checks import check_launch
from posttrain.recipe.overrides import apply_overrides
from posttrain.recipe.references import check_references
from posttrain.recipe.schema import Recipe, recipe_model, stage_spec_types

Loc = tuple[str | int, ...]


@dataclass
class LoadedRecipe:
    recipe: Recipe
    path: Path
    overrides: list[str]

    @property
    def base_dir(self) -> Path:
        """Relative paths in the recipe are resolved against its `base_dir`, by default the recipe file's folder."""
        return recipe_base_dir(self.path, self.recipe.base_dir)


def recipe_base_dir(path: Path, declared: object) -> Path:
    """The folder a recipe's relative paths are read from: its `base_dir:` (relative to the file) or its folder."""
    if isinstance(declared, str) and declared.strip():
        return path.parent / Path(declared).expanduser()
    return path.parent


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> LoadedRecipe:
    path = Path(path)
    try:
        found = path.is_file()
    except OSError as exc:  # a name the OS refuses outright (too long, ...)
        raise RecipeError(f"recipe file cannot be opened: {_short(str(path))}: {exc.strerror}") from None
    if not found:
        raise RecipeError(f"recipe file not found: {_short(str(path))}")
    document = read_yaml(path)
    overrides = list(overrides or [])
    overridden = apply_overrides(document, overrides)

    problems: list[str] = []
    recipe: Recipe | None = None
    base_dir = recipe_base_dir(path, document.get("base_dir"))
    try:
        recipe = recipe_model().model_validate(document, context={"base_dir": base_dir})
    except ValidationError as exc:
        problems += [_describe(path, document, err, overridden) for err in exc.errors()]
    problems += [
        _format(path, document, loc, message, overridden)
        for loc, message in (check_references(document, base_dir=base_dir) + check_launch(document, base_dir=base_dir)
                             + check_export(document, base_dir=base_dir) + check_family(document, base_dir=base_dir))
    ]
    if problems:
        problems.sort(key=_line_of)
        noun = "problem" if len(problems) == 1 else "problems"
        raise RecipeError(f"{path}: {len(problems)} {noun}", problems=problems)
    assert recipe is not None
    return LoadedRecipe(recipe=recipe, path=path, overrides=overrides)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:100]}…{text[-60:]} ({len(text)} characters)"


def _line_of(problem: str) -> int:
    match = re.match(r"^\S+?:(\d+):\d+ ", problem)
    return int(match.group(1)) if match else 1 << 30


def read_yaml(path: Path) -> Any:
    yaml = YAML(typ="rt")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:  # a folder, no permission, an I/O error
        raise RecipeError(f"{_short(str(path))}: cannot read the recipe ({exc.strerror or exc})") from None
    try:
        document = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise RecipeError(f"{where}: not valid YAML: {exc.problem}") from None
    except ReaderError as exc:  # a control character: ruamel reports its character offset
        line, col = _line_col(text, exc.position)
        raise RecipeError(f"{path}:{line}:{col}: not valid YAML: character {exc.character!r} is not allowed") from None
    except YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(document, CommentedMap):
        raise RecipeError(f"{path}: a recipe is a YAML mapping (name:, model:, stages: ...)")
    return document


def _line_col(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


class _PortableRepresenter(SafeRepresenter):
    """Quotes every string a YAML 1.1 reader (PyYAML, many tools) would read as something else.

    ruamel writes YAML 1.2, where `on`, `yes` and `off` are plain strings; a 1.1 reader
    turns them into booleans (a `dedup: {on: all}` key became `True`). Quoting them
    makes the file read back the same by any reader.
    """

    def represent_str(self, data: str) -> Any:
        node = super().represent_str(data)
        if node.style is None and _yaml11_reads_as_other_than_str(data):
            node.style = "'"
        return node


    def represent_float(self, data: float) -> Any:
        node = super().represent_float(data)
        mantissa, e, exponent = node.value.partition("e")
        if e and "." not in mantissa:  # YAML 1.1 reads `5e-05` as a string; `5.0e-05` is a float to both
            exponent = exponent if exponent[:1] in "+-" else f"+{exponent}"
            node.value = f"{mantissa}.0e{exponent}"
        return node


_PortableRepresenter.add_representer(str, _PortableRepresenter.represent_str)
_PortableRepresenter.add_representer(float, _PortableRepresenter.represent_float)


# YAML 1.1's booleans include y/n, which PyYAML's resolver leaves out but other 1.1 readers apply.
_YAML11_SHORT_BOOLS = frozenset({"y", "Y", "n", "N"})


def _yaml11_reads_as_other_than_str(text: str) -> bool:
    import yaml as pyyaml

    if text in _YAML11_SHORT_BOOLS:
        return True
    return pyyaml.resolver.Resolver().resolve(pyyaml.ScalarNode, text, (True, False)) != "tag:yaml.org,2002:str"


def dump_yaml(data: Any) -> str:
    """YAML text that YAML 1.1 and 1.2 readers both read back as `data`."""
    yaml = YAML(typ="safe", pure=True)
    yaml.Representer = _PortableRepresenter
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    return buffer.getvalue()


def yaml_path(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top>"


def _describe(path: Path, document: Any, error: dict[str, Any], overridden: set[Loc]) -> str:
    loc = _strip_union_tags(document, tuple(error["loc"]))
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        message = "unknown key" + _did_you_mean(document, loc)
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "union_tag_invalid":
        message = f"unknown stage type {error.get('input', {}).get('type')!r}; known: {_stage_types()}"
    elif kind == "union_tag_not_found":
        message = f"stage has no `type` (one of {_stage_types()})"
    elif message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return _format(path, document, loc, message, overridden)


def _format(path: Path, document: Any, loc: Loc, message: str, overridden: set[Loc]) -> str:
    if any(loc[: len(o)] == o or o[: len(loc)] == loc for o in overridden):
        where = f"{path} (--set)"
    else:
        line, col = locate(document, loc)
        where = f"{path}:{line}:{col}" if line else str(path)
    return f"{where} {yaml_path(loc)}: {message}"


def locate(document: Any, loc: Loc) -> tuple[int, int]:
    """1-based line:col of the deepest node of `loc` that exists in the YAML tree."""
    node, line, col = document, 0, 0
    for part in loc:
        try:
            if isinstance(node, CommentedMap) and part in node:
                line, col = node.lc.key(part)
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line, col = node.lc.item(part)
            else:
                break
        except (KeyError, TypeError):  # a node --set created has no place in the file
            break
        node = node[part]
    return (line + 1, col + 1) if (line or col or node is not document) else (0, 0)


def _strip_union_tags(document: Any, loc: Loc) -> Loc:
    # pydantic inserts the discriminator value ("sft") and the union member name
    # into error locations; they are not keys in the user's YAML.
    out: list[str | int] = []
    node = document
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("type") == part:
            continue
        if isinstance(part, str) and part.startswith(("function-", "str", "list[", "literal[")):
            continue
        out.append(part)
        node = node[part] if _has(node, part) else None
    return tuple(out)


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and part < len(node)


def _did_you_mean(document: Any, loc: Loc) -> str:
    model = _model_at(document, loc[:-1])
    if model is None or not isinstance(loc[-1], str):
        return ""
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(model.model_fields)})"


def _model_at(document: Any, loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at `loc`, for key suggestions."""
    stage_types = stage_spec_types()
    model: Any = recipe_model()
    node = document
    keyed_by_name = False  # inside a dict[str, Model]: this part is a user's name, not a field
    for part in loc:
        node = node[part] if _has(node, part) else None
        if isinstance(part, int) or keyed_by_name:
            keyed_by_name = False
            kind = node.get("type") if isinstance(node, dict) else None
            if isinstance(kind, str) and kind in stage_types:
                model = stage_types[kind]
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return None
        keyed_by_name = get_origin(field.annotation) is dict
        model = _unwrap(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """The BaseModel inside `X | None`, `dict[str, X]` or `list[X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _unwrap(arg)
        if found is not None:
            return found
    return None


def _stage_types() -> str:
    return ", ".join(stage_spec_types())
