"""`vllm`: a manifest with the exact `vllm serve` command for the stage's adapter, checked against vLLM's rules."""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.errors import UserError
from posttrain.export.declaration import ExportFormat
from posttrain.export.job import ExportJob
from posttrain.export.vllm import adapter_rank, vllm_problems, vllm_readme, write_vllm_manifest


def check(job: ExportJob) -> None:
    """Raise UserError with every vLLM rule the stage's (cumulative) adapter breaks; writes nothing."""
    from posttrain.models.lineage import ADAPTER_CONFIG

    if not job.lineage.adapters or trains_tokens(job):
        return  # served as a merged model (`write`): no LoRA rules apply
    configs = [json.loads((Path(a) / ADAPTER_CONFIG).read_text()) for a in job.lineage.adapters]
    total = sum(adapter_rank(c) for c in configs)  # the cumulative adapter stacks every stage's rank
    problems: list[str] = []
    for config in configs:
        for problem in vllm_problems({**config, "r": total, "rank_pattern": {}}, job.architecture()):
            if problem not in problems:
                problems.append(problem)
    if problems:
        raise UserError(f"vLLM cannot serve the adapter of stage {job.stage_name!r} (rank {total}):", problems)


def trains_tokens(job: ExportJob) -> bool:
    """Whether the stage's adapters train embedding rows (the tokens `model.chat_template` added)."""
    from posttrain.models.lineage import ADAPTER_CONFIG

    return any(json.loads((Path(a) / ADAPTER_CONFIG).read_text()).get("trainable_token_indices")
               for a in job.lineage.adapters)


def write(job: ExportJob) -> None:
    adapter = Path(job.paths["peft"]) if "peft" in job.paths else None  # a whole model has none: served alone
    base = job.lineage.base
    folder = job.folder(FORMAT.name)
    if adapter is not None and trains_tokens(job):
        # vLLM's LoRA no longer loads extra vocabulary or trained embedding rows, so an adapter that trained the
        # chat template's added tokens is served merged: one model folder here, no --enable-lora.
        from posttrain.export.formats.merged import save_merged

        adapter, base = None, str(folder / "model")
        save_merged(job, Path(base))
    manifest = write_vllm_manifest(
        folder, base_path=base, architecture=job.architecture(), name=job.engine_name, adapter_dir=adapter,
    )
    job.paths[FORMAT.name] = str(folder)
    job.serving[FORMAT.name] = vllm_readme(manifest)


def load(job: ExportJob, folder: Path) -> str:
    return "# see the vLLM section below: the server speaks the OpenAI API"


def serve(job: ExportJob, folder: Path) -> str:
    return json.loads((folder / "manifest.json").read_text())["command_line"]


FORMAT = ExportFormat(
    name="vllm", summary="a checked `vllm serve` manifest", write=write, title="vLLM serving", load=load, serve=serve,
    needs=("peft",), check=check,
)
