"""Prepare (curate, cache) every dataset the recipe's stages train on."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from data_prep import prepare_dataset
from posttrain.recipe.loader import LoadedRecipe


def prepare_datasets(
    loaded: LoadedRecipe, *, run_dir: Any, tokenizer: Any, console: Console, only_used: bool = True
) -> dict[str, Any]:
    """Curated datasets by name: those some stage trains on, or all of them."""
    from posttrain.evaluation.suite import task_documents

    recipe = loaded.recipe
    used = list(dict.fromkeys(stage.data for stage in recipe.stages)) if only_used else list(recipe.datasets)
    # `decontaminate: eval` guards the whole shipped suite, not only the tasks this recipe runs:
    # a model trained here may be evaluated on any of them later.
    eval_texts = task_documents()
    prepared = {}
    for name in used:
        prepared[name] = prepare_dataset(
            name,
            recipe.datasets[name],
            base_dir=loaded.base_dir,
            out_dir=run_dir / "data" / name,
            tokenizer=tokenizer,
            eval_texts=eval_texts,
            seed=recipe.seed,
            console=console,
        )
    return prepared
