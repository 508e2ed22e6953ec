"""`peft`: the stage's cumulative adapter — every LoRA of its lineage folded into one LoRA on the base."""

from __future__ import annotations

from pathlib import Path

from posttrain.export.declaration import ExportFormat
from posttrain.export.job import ExportJob


def write(job: ExportJob) -> None:
    from posttrain.models.lineage import cumulative_adapter

    folder = cumulative_adapter(job.lineage.adapters, job.folder(FORMAT.name), base_model=job.lineage.base)
    job.paths[FORMAT.name] = str(folder)


def load(job: ExportJob, folder: Path) -> str:
    return ("from peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n"
            f"base = AutoModelForCausalLM.from_pretrained({job.lineage.base!r})\n"
            f"model = PeftModel.from_pretrained(base, {str(folder)!r})")


def serve(job: ExportJob, folder: Path) -> str:
    return f"PeftModel.from_pretrained(base_model, {str(folder)!r})"


FORMAT = ExportFormat(
    name="peft", summary="every stage's cumulative adapter on the base", write=write, title="LoRA adapter",
    load=load, serve=serve, needs_adapter=True, default=True,
)
