"""`merged`: the base with every adapter of the lineage merged in (fp32), saved as a transformers model."""

from __future__ import annotations

from pathlib import Path

from posttrain.export.declaration import ExportFormat
from posttrain.export.job import ExportJob


def write(job: ExportJob) -> None:
    folder = job.folder(FORMAT.name)
    save_merged(job, folder)
    job.paths[FORMAT.name] = str(folder)


def save_merged(job: ExportJob, folder: Path) -> None:
    """The lineage merged, with its generation config (the end-of-turn eos) and tokenizer, saved in `folder`."""
    from posttrain.models.lineage import materialize

    model = materialize(job.lineage, dtype=job.model.dtype, trust_remote_code=job.model.trust_remote_code,
                        purpose="export")
    model.save_pretrained(folder, safe_serialization=True)
    model.generation_config.save_pretrained(folder)
    job.tokenizer.save_pretrained(folder)


def load(job: ExportJob, folder: Path) -> str:
    return f"from transformers import AutoModelForCausalLM\nAutoModelForCausalLM.from_pretrained({str(folder)!r})"


def serve(job: ExportJob, folder: Path) -> str:
    return f"vllm serve {folder}"


FORMAT = ExportFormat(
    name="merged", summary="the last stage's full model (and every full fine-tune's or distilled student's, which "
    "no adapter can stand for)", write=write, title="merged model", load=load, serve=serve, whole_model=True,
    default=True,
)
