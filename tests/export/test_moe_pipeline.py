"""A mixture-of-experts model (tiny Qwen3-MoE) through SFT → DPO → peft, merged and GGUF exports: LoRA adapts the
experts (PEFT's parameter wrappers, no dropout) or, with `lora.experts: false`, only attention and the router."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

RECIPE = """\
name: moe
seed: 4
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: chat.jsonl}}]}}
  prefs: {{kind: preference, sources: [{{path: prefs.jsonl}}]}}
eval: {{on_base: false}}
stages:
  - {{name: sft, type: sft, data: chat, evaluate: false, lora: {{r: 4{lora}}},
     train: {{max_steps: 2, batch_size: 4, lr: 1.0e-2, logging_steps: 1, max_length: 64}}}}
  - {{name: dpo, type: dpo, after: sft, data: prefs, evaluate: false, lora: {{r: 4{lora}}},
     train: {{max_steps: 2, batch_size: 4, lr: 1.0e-2, logging_steps: 1, max_length: 64}}}}
export: {{formats: [peft, merged, gguf], gguf: {{quants: [q8_0]}}}}
"""


def _workspace(folder: Path, model: Path, lora: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    chats = [{"messages": [{"role": "user", "content": f"What is {i} + 7?"},
                           {"role": "assistant", "content": f"Answer: {i + 7}"}]} for i in range(12)]
    prefs = [{"prompt": [{"role": "user", "content": f"What is {i} + 3?"}], "chosen": f"Answer: {i + 3}",
              "rejected": f"Answer: {i + 4}"} for i in range(12)]
    (folder / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chats))
    (folder / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in prefs))
    (folder / "moe.yaml").write_text(RECIPE.format(model=model, lora=lora))
    return folder / "moe.yaml"


@pytest.fixture(scope="module")
def moe_base(tmp_path_factory: pytest.TempPathFactory, embedded_base: Path, family_builder) -> Path:
    return family_builder("qwen3_moe", tmp_path_factory.mktemp("qwen3-moe"), embedded_base)


def test_qwen3_moe_sft_dpo_gguf_adapts_the_experts(moe_base: Path, tmp_path: Path, gguf_tools) -> None:
    from posttrain.export.llama_cpp import describe, tensor_names
    from posttrain.pipeline.runner import run_recipe
    from posttrain.recipe.loader import load_recipe

    runs = tmp_path / "runs"
    run_recipe(load_recipe(_workspace(tmp_path / "ws", moe_base)), runs_dir=runs, console=Console(quiet=True))
    for stage in ("sft", "dpo"):
        adapter = load_file(str(runs / "moe" / stage / "adapter" / "adapter_model.safetensors"))
        experts = {k: v for k, v in adapter.items() if ".experts." in k}
        assert experts, f"{stage}: no expert weights adapted"
        assert any("lora_B" in k and v.abs().max() > 0 for k, v in experts.items()), f"{stage}: experts did not move"
        config = json.loads((runs / "moe" / stage / "adapter" / "adapter_config.json").read_text())
        assert config["lora_dropout"] == 0.0
    export = runs / "moe" / "dpo" / "export"
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(export / "merged")
    base = AutoModelForCausalLM.from_pretrained(moe_base)
    name = "model.layers.0.mlp.experts.gate_up_proj"
    assert not torch.equal(merged.state_dict()[name], base.state_dict()[name]), "the merge left the experts as they were"
    # The peft export is the chain as one adapter (ranks joined per expert): on the base it equals the merge.
    from peft import PeftModel

    ids = torch.tensor([[1, 40, 41, 42, 43, 44]])
    with torch.no_grad():
        chained = PeftModel.from_pretrained(base, export / "peft")(input_ids=ids).logits
        expected = merged(input_ids=ids).logits
    assert torch.allclose(chained, expected, atol=1e-4), (chained - expected).abs().max()
    files = json.loads((export / "gguf" / "files.json").read_text())
    assert "adapter" not in files and "fused expert weights" in files["adapter_skipped"]
    q8 = export / "gguf" / files["models"]["q8_0"]
    assert describe(q8).architecture == "qwen3moe"
    assert any("ffn_gate_up_exps" in n or "ffn_gate_exps" in n for n in tensor_names(q8))


def test_experts_false_adapts_attention_only_and_an_explicit_dropout_is_refused(moe_base: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from posttrain.errors import UserError
    from posttrain.stagekit.specs import LoraSpec
    from posttrain.training.lora import expert_modules, lora_config

    model = AutoModelForCausalLM.from_pretrained(moe_base)
    assert expert_modules(model) == ["model.layers.0.mlp.experts", "model.layers.1.mlp.experts"]
    assert lora_config(LoraSpec(), model).lora_dropout == 0.0  # the default dropout gives way on MoE
    with pytest.raises(UserError, match=r"lora\.dropout 0\.05: this is a mixture-of-experts model"):
        lora_config(LoraSpec(dropout=0.05), model)
    from peft import get_peft_model

    adapted = get_peft_model(model, lora_config(LoraSpec(experts=False, dropout=0.05), model))
    names = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert names and not any(".experts" in n for n in names) and any("q_proj" in n for n in names)
