"""`gguf`: llama.cpp files made by llama.cpp's own tools — the merged model in f16 and in each requested quant
(`export.gguf.quants`, default q4_k_m and q8_0); with adapters, also the base in f16 and the cumulative adapter.

The merged model is saved as a Hugging Face folder inside the export folder,
converted by `convert_hf_to_gguf.py` (every architecture that llama.cpp
converts), then requantized by llama.cpp's quantizer. `files.json` records
each file with the tensor types the file really holds: llama.cpp falls back
to other types where a row does not split into a quant's blocks (K-quants
need rows of a multiple of 256 values).
"""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from posttrain.errors import UserError
from posttrain.export.declaration import ExportFormat
from posttrain.export.job import ExportJob

FILES = "files.json"
DEFAULT_QUANTS = ["q4_k_m", "q8_0"]
"""What `gguf` writes besides f16 when the recipe says nothing (the recipe's `export.gguf.quants` default)."""


def requested_quants(job: ExportJob) -> list[str]:
    from posttrain.export.llama_cpp import QUANT_FTYPES

    quants = list(dict.fromkeys(job.setting(FORMAT.name, "quants") or DEFAULT_QUANTS))
    unknown = [q for q in quants if q not in QUANT_FTYPES]
    if unknown:
        raise UserError(f"unknown GGUF quantization(s) {', '.join(unknown)}; choose from {', '.join(QUANT_FTYPES)}")
    return quants


def model_file(quant: str) -> str:
    return f"model-{quant}.gguf"


def write(job: ExportJob) -> None:
    from posttrain.export import llama_cpp

    quants = requested_quants(job)
    llama_cpp.tools_dir()  # a missing install is said before the merge, not after it
    if any(q not in ("f16", "bf16") for q in quants):
        llama_cpp.engine_python()
    folder = job.folder(FORMAT.name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.gguf"):  # a previous export's quants must not pass as this one's
        old.unlink()
    seconds: dict[str, float] = {}
    scratch = Path(tempfile.mkdtemp(prefix=".hf-merged-", dir=folder))
    try:
        started = time.perf_counter()
        _save_merged(job, scratch)
        seconds["merge"] = time.perf_counter() - started
        models = {"f16": model_file("f16")}
        started = time.perf_counter()
        # Named, not called after the scratch folder: llama.cpp reads some per-model quirks off the name.
        llama_cpp.convert_model(scratch, folder / models["f16"], "f16", name=job.engine_name)
        seconds["f16"] = time.perf_counter() - started
        if "bf16" in quants:  # from the fp32 weights: bf16 from f16 would round twice
            started = time.perf_counter()
            models["bf16"] = model_file("bf16")
            llama_cpp.convert_model(scratch, folder / models["bf16"], "bf16", name=job.engine_name)
            seconds["bf16"] = time.perf_counter() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for quant in quants:
        if quant not in models:
            started = time.perf_counter()
            models[quant] = model_file(quant)
            llama_cpp.quantize(folder / models["f16"], folder / models[quant], quant)
            seconds[quant] = time.perf_counter() - started
    files: dict[str, Any] = {"models": models, "quants": quants, "chosen": quants[0]}
    adapter_config = json.loads((Path(job.paths["peft"]) / "adapter_config.json").read_text()) \
        if "peft" in job.paths else {}
    if adapter_config.get("target_parameters"):
        # llama.cpp's LoRA converter takes adapters of linear modules only, not PEFT's wrappers of a
        # mixture-of-experts layer's fused expert weights: the merged files above hold those changes.
        files["adapter_skipped"] = ("the adapter holds LoRA on fused expert weights (PEFT target_parameters), which "
                                    "llama.cpp's convert_lora_to_gguf.py does not take; the model files are merged")
    elif adapter_config.get("trainable_token_indices"):
        # llama.cpp's LoRA converter takes LoRA matrices only; the trained rows of the added tokens live in the
        # merged files (whose vocabulary has them), so no base + adapter pair is written.
        files["adapter_skipped"] = ("the adapter trains the embedding rows of the tokens model.chat_template added, "
                                    "which llama.cpp's convert_lora_to_gguf.py does not take; the model files are "
                                    "merged")
    elif "peft" in job.paths:
        base = Path(job.lineage.base)
        files["base"] = "base-f16.gguf"
        files["adapter"] = "adapter-f16.gguf"
        llama_cpp.convert_model(base, folder / files["base"], "f16", name=f"{job.engine_name}-base")
        llama_cpp.convert_adapter(Path(job.paths["peft"]), base, folder / files["adapter"], "f16")
    facts = {quant: llama_cpp.describe(folder / name) for quant, name in models.items()}
    files.update(
        file_types={quant: f.file_type for quant, f in facts.items()},
        tensor_types={quant: dict(sorted(f.tensor_types.items())) for quant, f in facts.items()},
        tensor_count=facts["f16"].tensor_count,
        bytes={quant: (folder / name).stat().st_size for quant, name in models.items()},
        seconds={k: round(v, 2) for k, v in seconds.items()},
        chat_template=facts["f16"].chat_template is not None,
    )
    (folder / FILES).write_text(json.dumps(files, indent=2))
    job.paths[FORMAT.name] = str(folder)
    job.serving[FORMAT.name] = _llama_cpp_section(folder, files)


def _save_merged(job: ExportJob, out: Path) -> None:
    """The lineage's merged model in fp32 with its tokenizer, as the Hugging Face folder the converter reads."""
    from posttrain.models.lineage import materialize

    merged = materialize(job.lineage, dtype="float32", trust_remote_code=job.model.trust_remote_code,
                         purpose="export")
    merged.save_pretrained(out, safe_serialization=True)
    del merged
    job.tokenizer.save_pretrained(out)
    base = Path(job.lineage.base)
    for name in ("tokenizer.model",):  # a SentencePiece model the fast tokenizer may not write back
        if (base / name).exists() and not (out / name).exists():
            shutil.copy2(base / name, out / name)


def read_files(folder: Path) -> dict[str, Any]:
    """The folder's `files.json`; UserError when the gguf export is missing or from before llama.cpp's tools."""
    listed = folder / FILES
    files = json.loads(listed.read_text()) if listed.exists() else {}
    if "models" not in files:
        raise UserError(f"{folder} holds no GGUF export of this version; export again with --format gguf")
    return files


def chosen_file(folder: Path) -> Path:
    """The file of the first requested quant: the one Ollama's Modelfile and the serve command use."""
    files = read_files(folder)
    return folder / files["models"][files["chosen"]]


def _llama_cpp_section(folder: Path, files: dict[str, Any]) -> str:
    chosen = files["chosen"]
    lines = ["## Serve with llama.cpp", "", "```bash",
             shlex.join(["llama-server", "-m", str(folder / files["models"][chosen])]) + f"   # merged, {chosen}"]
    lines += [shlex.join(["llama-server", "-m", str(folder / files["models"][q])]) + f"   # merged, {q}"
              for q in files["models"] if q != chosen]
    if "adapter" in files:
        lines.append(shlex.join(["llama-server", "-m", str(folder / files["base"]),
                                 "--lora", str(folder / files["adapter"])]) + "   # base + LoRA adapter")
    lines += ["```", "", "```python", "from llama_cpp import Llama",
              f"llm = Llama(model_path={str(folder / files['models'][chosen])!r})", "```", ""]
    return "\n".join(lines)


def up_to_date(job: ExportJob, folder: Path) -> bool:
    """Every file `files.json` lists is still there, and it holds the quants the recipe asks for now."""
    try:
        files = read_files(folder)
    except (UserError, ValueError):
        return False
    listed = [*files["models"].values(), *(files[k] for k in ("base", "adapter") if k in files)]
    return files.get("quants") == requested_quants(job) and all((folder / name).exists() for name in listed)


def load(job: ExportJob, folder: Path) -> str:
    return f"from llama_cpp import Llama\nllm = Llama(model_path={str(chosen_file(folder))!r})"


def serve(job: ExportJob, folder: Path) -> str:
    return shlex.join(["llama-server", "-m", str(chosen_file(folder))])


FORMAT = ExportFormat(
    name="gguf", summary="llama.cpp files by llama.cpp's own converter and quantizer (last stage)", write=write,
    title="GGUF for llama.cpp", load=load, serve=serve, needs=("peft",), whole_model=True, up_to_date=up_to_date,
)
