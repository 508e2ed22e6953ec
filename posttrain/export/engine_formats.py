"""The serving-engine formats of a stage export: vLLM manifest, GGUF files, Ollama Modelfiles.

Each writer takes the `StageExport` job of `artifacts.export_stage`, writes its
folder under `job.out`, records the folder in `job.paths` and a serving section
(for every model card of the export) in `job.serving`.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from posttrain.errors import UserError
from posttrain.export.gguf_export import write_adapter_gguf, write_model_gguf
from posttrain.export.ollama import go_template, write_modelfile
from posttrain.export.vllm import adapter_rank, vllm_problems, vllm_readme, write_vllm_manifest
from posttrain.models.lineage import ADAPTER_CONFIG, materialize
from posttrain.models.loading import load_model


def _base_config(job: Any) -> dict[str, Any]:
    path = Path(job.lineage.base) / "config.json"
    if not path.exists():
        raise UserError(f"engine exports need the base weights as a local Hugging Face folder; {path} does not exist")
    return json.loads(path.read_text())


def _architecture(job: Any) -> str:
    return (_base_config(job).get("architectures") or ["?"])[0]


def engine_name(job: Any) -> str:
    """A name engines accept for this model (`dpo-sft`): the recipe and stage, lower case."""
    return re.sub(r"[^a-z0-9._-]+", "-", f"{job.recipe.name}-{job.stage_name}".lower())


def check_vllm(job: Any) -> None:
    """Raise UserError with every vLLM rule the stage's (cumulative) adapter breaks; writes nothing."""
    if not job.lineage.adapters:
        return
    configs = [json.loads((Path(a) / ADAPTER_CONFIG).read_text()) for a in job.lineage.adapters]
    total = sum(adapter_rank(c) for c in configs)  # the cumulative adapter stacks every stage's rank
    problems: list[str] = []
    for config in configs:
        for problem in vllm_problems({**config, "r": total, "rank_pattern": {}}, _architecture(job)):
            if problem not in problems:
                problems.append(problem)
    if problems:
        raise UserError(f"vLLM cannot serve the adapter of stage {job.stage_name!r} (rank {total}):", problems)


def write_vllm(job: Any) -> None:
    adapter = Path(job.paths["peft"]) if "peft" in job.paths else None
    manifest = write_vllm_manifest(
        job.out / "vllm", base_path=job.lineage.base, architecture=_architecture(job), name=engine_name(job),
        adapter_dir=adapter,
    )
    job.paths["vllm"] = str(job.out / "vllm")
    job.serving["vllm"] = vllm_readme(manifest)


def write_gguf(job: Any) -> None:
    """Merged model in f16 and q8_0; with adapters, also the base in f16 and the cumulative adapter."""
    folder = job.out / "gguf"
    folder.mkdir(parents=True, exist_ok=True)
    config = _base_config(job)
    name = engine_name(job)
    merged = materialize(job.lineage, dtype="float32", trust_remote_code=job.recipe.model.trust_remote_code)
    state = merged.state_dict()
    for quant in ("f16", "q8_0"):
        write_model_gguf(folder / f"model-{quant}.gguf", tensors=state.items(), config=config,
                         tokenizer=job.tokenizer, quant=quant, name=name)
    del merged, state
    files = {"model_f16": "model-f16.gguf", "model_q8_0": "model-q8_0.gguf"}
    if "peft" in job.paths:
        base = load_model(job.lineage.base, dtype="float32", trust_remote_code=job.recipe.model.trust_remote_code)
        write_model_gguf(folder / "base-f16.gguf", tensors=base.state_dict().items(), config=config,
                         tokenizer=job.tokenizer, quant="f16", name=f"{name}-base")
        del base
        write_adapter_gguf(folder / "adapter-f16.gguf", adapter_dir=Path(job.paths["peft"]), config=config, name=name)
        files.update(base_f16="base-f16.gguf", adapter="adapter-f16.gguf")
    (folder / "files.json").write_text(json.dumps(files, indent=2))
    job.paths["gguf"] = str(folder)
    job.serving["llama.cpp"] = _llama_cpp_section(folder, files)


def _llama_cpp_section(folder: Path, files: dict[str, str]) -> str:
    lines = ["## Serve with llama.cpp", "", "```bash",
             shlex.join(["llama-server", "-m", str(folder / files["model_q8_0"])]) + "   # merged, 8-bit"]
    if "adapter" in files:
        lines.append(shlex.join(["llama-server", "-m", str(folder / files["base_f16"]),
                                 "--lora", str(folder / files["adapter"])]) + "   # base + LoRA adapter")
    lines += ["```", "", "```python", "from llama_cpp import Llama",
              f"llm = Llama(model_path={str(folder / files['model_f16'])!r})", "```", ""]
    return "\n".join(lines)


def write_ollama(job: Any) -> None:
    template, stops = go_template(job.tokenizer)
    folder, gguf = job.out / "ollama", Path(job.paths["gguf"])
    name = engine_name(job)
    merged = write_modelfile(folder, model_gguf=gguf / "model-q8_0.gguf", adapter_gguf=None, template=template,
                             stops=stops, name=name)
    commands = [merged["command_line"]]
    if (gguf / "adapter-f16.gguf").exists():
        with_adapter = write_modelfile(folder, model_gguf=gguf / "base-f16.gguf", adapter_gguf=gguf / "adapter-f16.gguf",
                                       template=template, stops=stops, name=f"{name}-lora", filename="Modelfile.adapter")
        commands.append(with_adapter["command_line"])
    (folder / "commands.json").write_text(json.dumps({"create": commands, "run": merged["run"]}, indent=2))
    job.paths["ollama"] = str(folder)
    job.serving["ollama"] = "\n".join(
        ["## Serve with Ollama", "", "```bash", *commands, merged["run"], "```", ""]
    )


def how_to_load(fmt: str, job: Any) -> str:
    """The Python snippet for the model card of a `fmt` folder."""
    if fmt == "gguf":
        return f"from llama_cpp import Llama\nllm = Llama(model_path={str(Path(job.paths['gguf']) / 'model-f16.gguf')!r})"
    if fmt == "ollama":
        return f"import subprocess\nsubprocess.run(['ollama', 'create', {engine_name(job)!r}, '-f', " \
               f"{str(Path(job.paths['ollama']) / 'Modelfile')!r}], check=True)"
    return "# see the vLLM section below: the server speaks the OpenAI API"
