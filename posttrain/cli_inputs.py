"""What a user typed, turned into what the commands run: a recipe by path or shipped name, eval settings from
`posttrain eval`'s options. Every bad value is a UserError (exit 2), never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posttrain.errors import UserError


def load_named_recipe(recipe: Path, overrides: list[str] | None) -> Any:
    """A recipe file, or a shipped recipe by bare name (`quickstart`) when no such file is here."""
    from posttrain.paths import recipes_dir
    from posttrain.recipe.loader import load_recipe

    shipped = recipes_dir() / f"{recipe}.yaml"
    if recipe.suffix == "" and len(recipe.parts) == 1 and _exists(shipped) and not _exists(recipe):
        recipe = shipped
    return load_recipe(recipe, overrides or [])


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name the OS refuses (too long): nothing is there
        return False


def eval_spec_from_options(recipe: Path | None, tasks: list[str] | None, limit: int | None,
                           include: list[Path] | None, num_fewshot: int | None, gen_kwargs: str | None,
                           batch_size: int) -> Any:
    """The eval section of `recipe` (or defaults) with the command line's settings on top."""
    from pydantic import ValidationError

    from posttrain.stagekit.specs import EvalSpec

    settings = load_named_recipe(recipe, []).recipe.eval.model_dump(mode="json") if recipe else {"limit": None}
    if tasks:
        entries = [t.strip() for raw in tasks for t in raw.split(",") if t.strip()]
        settings["tasks"] = [
            {"task": e.split("=", 1)[0], "data_files": e.split("=", 1)[1]} if "=" in e else e for e in entries
        ]
    if limit is not None:
        settings["limit"] = limit
    if include:
        settings["include"] = [*settings.get("include", []), *map(str, include)]
    if num_fewshot is not None:
        settings["num_fewshot"] = num_fewshot
    if gen_kwargs:
        settings["gen_kwargs"] = dict(_kv(item) for item in gen_kwargs.split(",") if item.strip())
    settings["batch_size"] = batch_size
    try:
        spec = EvalSpec.model_validate(settings, context={"base_dir": Path.cwd()})
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise UserError("invalid eval settings", problems=problems) from None
    from posttrain.evaluation.tasks import plan_tasks

    plan_tasks(spec.tasks, spec.include, num_fewshot=spec.num_fewshot)  # unknown names / missing data: exit 2 now
    return spec


def _kv(item: str) -> tuple[str, str | int | float]:
    key, sep, value = item.partition("=")
    if not sep:
        raise UserError(f"--gen-kwargs: {item!r} is not key=value")
    for cast in (int, float):
        try:
            return key.strip(), cast(value)
        except ValueError:
            pass
    return key.strip(), value.strip()
