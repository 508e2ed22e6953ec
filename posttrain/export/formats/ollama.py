"""`ollama`: Modelfiles on the GGUF files — the merged q8_0 model, and the base with the adapter."""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.export.declaration import ExportFormat
from posttrain.export.job import ExportJob

COMMANDS = "commands.json"


def write(job: ExportJob) -> None:
    from posttrain.export.ollama import go_template, write_modelfile

    template, stops = go_template(job.tokenizer)
    folder, gguf = job.folder(FORMAT.name), Path(job.paths["gguf"])
    name = job.engine_name
    merged = write_modelfile(folder, model_gguf=gguf / "model-q8_0.gguf", adapter_gguf=None, template=template,
                             stops=stops, name=name)
    commands = [merged["command_line"]]
    if (gguf / "adapter-f16.gguf").exists():
        with_adapter = write_modelfile(folder, model_gguf=gguf / "base-f16.gguf", adapter_gguf=gguf / "adapter-f16.gguf",
                                       template=template, stops=stops, name=f"{name}-lora", filename="Modelfile.adapter")
        commands.append(with_adapter["command_line"])
    (folder / COMMANDS).write_text(json.dumps({"create": commands, "run": merged["run"]}, indent=2))
    job.paths[FORMAT.name] = str(folder)
    job.serving[FORMAT.name] = "\n".join(["## Serve with Ollama", "", "```bash", *commands, merged["run"], "```", ""])


def load(job: ExportJob, folder: Path) -> str:
    return (f"import subprocess\nsubprocess.run(['ollama', 'create', {job.engine_name!r}, '-f', "
            f"{str(folder / 'Modelfile')!r}], check=True)")


def serve(job: ExportJob, folder: Path) -> str:
    commands = json.loads((folder / COMMANDS).read_text())
    return f"{commands['create'][0]} && {commands['run']}"


FORMAT = ExportFormat(
    name="ollama", summary="Modelfiles (last stage)", write=write, title="Ollama Modelfile", load=load, serve=serve,
    needs=("gguf",),
)
