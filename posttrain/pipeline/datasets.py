"""Curate (and cache) the recipe's datasets; their fingerprints without curating, for the plan."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from data_prep import dataset_fingerprint, prepare_dataset, texts_fingerprint, tokenizer_id
from posttrain.failpoints import failpoint
from posttrain.pipeline.session import RunSession
from posttrain.run_layout import RunDir


def used_datasets(session: RunSession) -> list[str]:
    """Names of the datasets some stage trains on, in first-use order."""
    return list(dict.fromkeys(stage.data for stage in session.recipe.stages))


def dataset_fingerprints(session: RunSession, names: list[str]) -> dict[str, str]:
    """What `prepare_datasets` would key each dataset's cache by, computed without curating anything."""
    recipe = session.recipe
    eval_fp = texts_fingerprint(session.eval_texts())
    tok_id = tokenizer_id(session.tokenizer)
    return {
        name: dataset_fingerprint(
            recipe.datasets[name], base_dir=session.loaded.base_dir, tokenizer_id=tok_id,
            eval_fingerprint=eval_fp, seed=recipe.seed,
        )
        for name in names
    }


def prepare_datasets(session: RunSession, names: list[str], *, console: Console) -> dict[str, Any]:
    """Curated datasets (data_prep.PreparedDataset) by name, under `run_dir/data/<name>/`."""
    recipe = session.recipe
    eval_texts = session.eval_texts()
    prepared = {}
    for name in names:
        prepared[name] = prepare_dataset(
            name, recipe.datasets[name], base_dir=session.loaded.base_dir,
            out_dir=RunDir(session.run_dir).data_dir(name), tokenizer=session.tokenizer, eval_texts=eval_texts,
            seed=recipe.seed, console=console,
        )
        failpoint("curation")
    return prepared
