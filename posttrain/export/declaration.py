"""`ExportFormat`: the one declaration an export format makes about itself.

The recipe schema (the formats `export.formats` accepts, and its default), the
runner (which stages get which formats), `posttrain export`, the model cards
and the report's exports table all read formats from these declarations,
collected in `posttrain.export.formats.EXPORT_FORMATS`; nothing else lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from posttrain.export.job import ExportJob


@dataclass(frozen=True)
class ExportFormat:
    name: str
    """What `export.formats` and `posttrain export --format` write; also the folder under `<stage>/export/`."""
    summary: str
    """One line for the recipe schema's description of `export.formats`."""
    write: Callable[[ExportJob], None]
    """Write `job.folder(name)` and record it in `job.paths[name]`; a format an engine serves also puts the
    markdown section on serving it in `job.serving[name]`, which every model card of the export shows.
    Formats named in `needs` are written first: their folders are in `job.paths`."""
    title: str
    """What the model card in the format's folder calls the artifact ("LoRA adapter")."""
    load: Callable[[ExportJob, Path], str]
    """`(job, folder) -> Python snippet` for the model card's Load section."""
    serve: Callable[[ExportJob, Path], str] | None = None
    """`(job, folder) -> the command` the report's exports table shows to serve or load it."""
    needs: tuple[str, ...] = ()
    """Formats this one builds on (ollama loads gguf/); asking for it writes them too."""
    whole_model: bool = False
    """It holds the whole model, so a run writes it for the last stage only, and for the stages that trained
    a whole model (full fine-tunes, distilled students), which no adapter can stand for. A format that needs
    a whole-model format is one too."""
    needs_adapter: bool = False
    """It is the LoRA adapter itself: stages that trained a whole model have none and skip it."""
    default: bool = False
    """Written when a recipe names no `export.formats`."""
    check: Callable[[ExportJob], None] | None = None
    """Raise `UserError` with what the engine would refuse, before any format of the export is written."""
    up_to_date: Callable[[ExportJob, Path], bool] | None = None
    """`(job, folder) -> bool`: whether a folder written earlier for the same stage fingerprint and scores can
    be reused. The export always checks that the folder still exists; this adds the format's own test."""

    def reusable(self, job: ExportJob) -> bool:
        path = job.paths.get(self.name)
        if path is None or not Path(path).is_dir():  # moved or deleted since: write it again
            return False
        return self.up_to_date(job, Path(path)) if self.up_to_date else True
