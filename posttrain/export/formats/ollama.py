"""`ollama`: Modelfiles on the GGUF files — the merged model in the chosen quant (the first of
`export.gguf.quants`), and the base with the adapter; the template is the GGUF's own chat template."""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.errors import UserError
from posttrain.export.declaration import ExportFormat
from posttrain.export.job import ExportJob

COMMANDS = "commands.json"


def write(job: ExportJob) -> None:
    from posttrain.export.formats.gguf import read_files
    from posttrain.export.llama_cpp import describe
    from posttrain.export.ollama import go_template, write_modelfile

    gguf = Path(job.paths["gguf"])
    files = read_files(gguf)
    model = gguf / files["models"][files["chosen"]]
    # What Ollama applies is the template inside the GGUF (written by llama.cpp's converter), so that is the
    # one turned into Go and checked against the tokenizer's renders.
    chat_template = describe(model).chat_template
    if chat_template is None:
        raise UserError(f"{model} carries no tokenizer.chat_template, so Ollama would not know the chat format; "
                        "save the tokenizer with a chat template and export again")
    template, stops = go_template(job.tokenizer, chat_template)
    folder = job.folder(FORMAT.name)
    name = job.engine_name
    merged = write_modelfile(folder, model_gguf=model, adapter_gguf=None, template=template, stops=stops, name=name)
    commands = [merged["command_line"]]
    if "adapter" in files:
        with_adapter = write_modelfile(folder, model_gguf=gguf / files["base"], adapter_gguf=gguf / files["adapter"],
                                       template=template, stops=stops, name=f"{name}-lora", filename="Modelfile.adapter")
        commands.append(with_adapter["command_line"])
    (folder / COMMANDS).write_text(json.dumps({"create": commands, "run": merged["run"], "quant": files["chosen"]},
                                              indent=2))
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
