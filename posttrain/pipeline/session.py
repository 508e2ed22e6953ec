"""A recipe opened for work: its run directory, its base model resolved and its tokenizer loaded, once.

`run`, `plan` and `data` all start here, so the base model is resolved and the
tokenizer read in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from rich.console import Console

from posttrain.fingerprint import fingerprint
from posttrain.models.chat_template import ChatTemplate, load_chat_template
from posttrain.models.lineage import Lineage
from posttrain.models.loading import load_tokenizer, start_of_lineages
from posttrain.models.precision import precision_key
from posttrain.models.resolve import ResolvedModel, resolve_model
from posttrain.recipe.loader import LoadedRecipe
from posttrain.recipe.schema import Recipe


@dataclass
class RunSession:
    loaded: LoadedRecipe
    run_dir: Path
    """Absolute, because lineages store adapter paths and must survive a change of cwd."""
    base: ResolvedModel
    tokenizer: Any

    @property
    def recipe(self) -> Recipe:
        return self.loaded.recipe

    @cached_property
    def base_lineage(self) -> Lineage:
        """Where every lineage starts; with `model.quantize: 4bit`, the dequantized NF4 base (made once)."""
        model = self.recipe.model
        return start_of_lineages(
            self.base, quantize=model.quantize, revision=model.revision, trust_remote_code=model.trust_remote_code,
            chat_template=self.chat_template,
        )

    @cached_property
    def chat_template(self) -> ChatTemplate | None:
        """`model.chat_template` read (relative files from the recipe's folder); None when the recipe has none."""
        value = self.recipe.model.chat_template
        return load_chat_template(value, self.loaded.base_dir) if value else None

    @property
    def base_fingerprint(self) -> str:
        model = self.recipe.model
        quantized = (model.quantize,) if model.quantize else ()  # fingerprints of unquantized runs unchanged
        # The template's text, not its name: editing a template file retrains. Absent when unset (caches kept).
        template = (self.chat_template.text,) if self.chat_template else ()
        return fingerprint(self.base.identity, precision_key(model.dtype), model.revision, *quantized, *template)

    def eval_texts(self) -> list[str]:
        """Documents of the whole shipped eval suite: `decontaminate: eval` guards all of them, not only
        the tasks this recipe runs, since a model trained here may be evaluated on any of them later."""
        from posttrain.evaluation.suite import task_documents

        return task_documents()


def open_session(loaded: LoadedRecipe, *, runs_dir: Path, console: Console | None = None) -> RunSession:
    """Resolve the base model (the first use of a GGUF dequantizes it) and load its tokenizer."""
    model = loaded.recipe.model
    console = console or Console(quiet=True)
    with console.status("Resolving the base model (first use dequantizes embedded weights)..."):
        base = resolve_model(model.base, base_dir=loaded.base_dir, prefer_hub=model.prefer_hub)
    session = RunSession(loaded, (runs_dir / loaded.recipe.name).resolve(), base, tokenizer=None)
    if model.chat_template:  # the templated base's tokenizer: the template, its added tokens, eos = end of turn
        with console.status("Giving the base model its chat template (once)..."):
            session.tokenizer = load_tokenizer(session.base_lineage.base, trust_remote_code=model.trust_remote_code)
    else:
        session.tokenizer = load_tokenizer(base.path, trust_remote_code=model.trust_remote_code,
                                           revision=model.revision)
    return session
