"""`gguf`: llama.cpp files — the merged model in f16 and q8_0; with adapters, also the base in f16 and the
cumulative adapter."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from posttrain.export.declaration import ExportFormat
from posttrain.export.job import ExportJob

FILES = "files.json"


def write(job: ExportJob) -> None:
    from posttrain.export.gguf_export import write_adapter_gguf, write_model_gguf
    from posttrain.models.lineage import materialize
    from posttrain.models.loading import load_model

    folder = job.folder(FORMAT.name)
    folder.mkdir(parents=True, exist_ok=True)
    config = job.base_config()
    name = job.engine_name
    merged = materialize(job.lineage, dtype="float32", trust_remote_code=job.model.trust_remote_code)
    state = merged.state_dict()
    for quant in ("f16", "q8_0"):
        write_model_gguf(folder / f"model-{quant}.gguf", tensors=state.items(), config=config,
                         tokenizer=job.tokenizer, quant=quant, name=name)
    del merged, state
    files = {"model_f16": "model-f16.gguf", "model_q8_0": "model-q8_0.gguf"}
    if "peft" in job.paths:
        base = load_model(job.lineage.base, dtype="float32", trust_remote_code=job.model.trust_remote_code)
        write_model_gguf(folder / "base-f16.gguf", tensors=base.state_dict().items(), config=config,
                         tokenizer=job.tokenizer, quant="f16", name=f"{name}-base")
        del base
        write_adapter_gguf(folder / "adapter-f16.gguf", adapter_dir=Path(job.paths["peft"]), config=config, name=name)
        files.update(base_f16="base-f16.gguf", adapter="adapter-f16.gguf")
    (folder / FILES).write_text(json.dumps(files, indent=2))
    job.paths[FORMAT.name] = str(folder)
    job.serving[FORMAT.name] = _llama_cpp_section(folder, files)


def _llama_cpp_section(folder: Path, files: dict[str, str]) -> str:
    lines = ["## Serve with llama.cpp", "", "```bash",
             shlex.join(["llama-server", "-m", str(folder / files["model_q8_0"])]) + "   # merged, 8-bit"]
    if "adapter" in files:
        lines.append(shlex.join(["llama-server", "-m", str(folder / files["base_f16"]),
                                 "--lora", str(folder / files["adapter"])]) + "   # base + LoRA adapter")
    lines += ["```", "", "```python", "from llama_cpp import Llama",
              f"llm = Llama(model_path={str(folder / files['model_f16'])!r})", "```", ""]
    return "\n".join(lines)


def up_to_date(job: ExportJob, folder: Path) -> bool:
    """Every file `files.json` lists is still there."""
    listed = folder / FILES
    return listed.exists() and all((folder / name).exists() for name in json.loads(listed.read_text()).values())


def load(job: ExportJob, folder: Path) -> str:
    return f"from llama_cpp import Llama\nllm = Llama(model_path={str(folder / 'model-f16.gguf')!r})"


def serve(job: ExportJob, folder: Path) -> str:
    return shlex.join(["llama-server", "-m", str(folder / "model-q8_0.gguf")])


FORMAT = ExportFormat(
    name="gguf", summary="llama.cpp files (last stage)", write=write, title="GGUF for llama.cpp", load=load,
    serve=serve, needs=("peft",), whole_model=True, up_to_date=up_to_date,
)
