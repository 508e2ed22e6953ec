"""Option lists read from TRL itself, so a recipe is checked against the TRL that will train it.

TRL declares a config field's allowed values in the field's help metadata
("Possible values are: `'sigmoid'`, `'hinge'`, ..."), not as a type. Importing
a TRL config costs seconds (it pulls in transformers' TrainingArguments), and
validating a recipe must stay cheap, so the field is read from the config
module's source with `ast`, without importing it; the import is only the
fallback when the source does not have the expected shape. Each list is read
once per process.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import re
from functools import cache
from pathlib import Path

DPO_CONFIG = "trl.trainer.dpo_config:DPOConfig"


def dpo_loss_types() -> tuple[str, ...]:
    """The `loss_type` values TRL's DPOConfig lists; () when the installed TRL does not list them."""
    return field_choices(DPO_CONFIG, "loss_type")


@cache
def field_choices(config: str, name: str) -> tuple[str, ...]:
    """The values after "Possible values are:" in field `name`'s help of `config` ("module:Class"), in order."""
    help_text = _help_from_source(config, name)
    if help_text is None:
        help_text = _help_from_import(config, name)
    return choices_in_help(help_text or "")


def choices_in_help(help_text: str) -> tuple[str, ...]:
    """The back-quoted values of the "Possible values are: ..." sentence of a TRL help text.

    >>> choices_in_help("Type of loss. Possible values are: `'sigmoid'`, `'ipo'`. If multiple, ...")
    ('sigmoid', 'ipo')
    >>> choices_in_help("Possible values are: `reverse_kl` (default), `forward_kl`. Only some ...")
    ('reverse_kl', 'forward_kl')
    >>> choices_in_help("no list here")
    ()
    """
    sentence = re.search(r"Possible values are:(.*?)\.(?:\s|$)", help_text, flags=re.DOTALL)
    if sentence is None:
        return ()
    return tuple(re.findall(r"`'?([\w-]+)'?`", sentence.group(1)))


def _help_from_source(config: str, name: str) -> str | None:
    """The help metadata of dataclass field `name`, read from the module's source without importing it."""
    module, class_name = config.split(":")
    path = _source_path(module)
    if path is None:
        return None
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for statement in node.body:
                if (
                    isinstance(statement, ast.AnnAssign)
                    and isinstance(statement.target, ast.Name)
                    and statement.target.id == name
                    and isinstance(statement.value, ast.Call)
                ):
                    return _metadata_help(statement.value)
    return None


def _metadata_help(call: ast.Call) -> str | None:
    """The "help" string of a `field(..., metadata={"help": "..."})` call."""
    for keyword in call.keywords:
        if keyword.arg == "metadata" and isinstance(keyword.value, ast.Dict):
            for key, value in zip(keyword.value.keys, keyword.value.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "help" and isinstance(value, ast.Constant):
                    return value.value if isinstance(value.value, str) else None
    return None


def _source_path(module: str) -> Path | None:
    """The .py file of `module` (a.b.c), found from the top package's location so nothing gets imported."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *rest).with_suffix(".py")
    return path if path.is_file() else None


def _help_from_import(config: str, name: str) -> str | None:
    module, class_name = config.split(":")
    try:
        cls = getattr(importlib.import_module(module), class_name)
    except (ImportError, AttributeError):
        return None
    found = {f.name: f for f in dataclasses.fields(cls)}.get(name)
    return found.metadata.get("help") if found else None
