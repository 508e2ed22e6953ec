"""The GPU recipe's data step on local files in its hub datasets' exact schemas.

`recipes/gpu/qwen2.5-0.5b-sft-dpo.yaml` reads HuggingFaceH4/ultrachat_200k (chat)
and HuggingFaceH4/ultrafeedback_binarized (preference) from the hub; here `--set`
points both at small local files in those layouts, and the tiny test model stands
in for Qwen (the data step only needs its tokenizer for the token-length filter).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from posttrain.paths import recipes_dir

REPO = Path(__file__).resolve().parents[2]
TOPICS = [
    ("How do tides work?", "The Moon's gravity pulls the oceans, making two bulges as Earth turns."),
    ("Give me a packing list for a beach day.", "Sunscreen, a towel, water, a hat and a good book."),
    ("Why is the sky blue?", "Air molecules scatter blue sunlight more strongly than red light."),
    ("Suggest a name for a bakery.", "How about Rise and Shine Bakehouse?"),
    ("What does a compiler do?", "It translates source code into machine code before the program runs."),
    ("How can I sleep better?", "Keep a regular schedule, dim the lights and skip late coffee."),
]


def msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def write_ultrachat(path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i, (q, a) in enumerate(TOPICS):
            messages = [
                msg("user", q),
                msg("assistant", a),
                msg("user", "Tell me more."),
                msg("assistant", a + " More detail follows."),
            ]
            f.write(json.dumps({"prompt": q, "prompt_id": f"{i:064x}", "messages": messages}) + "\n")


def write_ultrafeedback(path: Path) -> None:
    rows = []
    for i, (q, a) in enumerate(TOPICS):
        chosen, rejected = (
            [msg("user", q), msg("assistant", a)],
            [msg("user", q), msg("assistant", "I do not know.")],
        )
        rows.append(
            {
                "prompt": q,
                "prompt_id": f"{i:064x}",
                "chosen": chosen,
                "rejected": rejected,
                "messages": chosen,
                "score_chosen": 8.0,
                "score_rejected": 2.0,
            }
        )
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_gpu_sft_dpo_recipe_prepares_ultrachat_and_ultrafeedback(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    write_ultrachat(tmp_path / "ultrachat.jsonl")
    write_ultrafeedback(tmp_path / "ultrafeedback.parquet")
    recipe = recipes_dir() / "gpu" / "qwen2.5-0.5b-sft-dpo.yaml"
    assert "HuggingFaceH4/ultrafeedback_binarized" in recipe.read_text()  # the recipe still names the hub set
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "posttrain.cli",
            "data",
            str(recipe),
            "--set",
            f"model.base={tiny_model_dir}",
            "--set",
            f"datasets.chat.sources=[{{path: {tmp_path / 'ultrachat.jsonl'}}}]",
            "--set",
            f"datasets.prefs.sources=[{{path: {tmp_path / 'ultrafeedback.parquet'}}}]",
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    data = tmp_path / "runs" / "qwen2.5-0.5b-sft-dpo" / "data"
    chat = json.loads((data / "chat" / "report.json").read_text())
    prefs = json.loads((data / "prefs" / "report.json").read_text())
    assert chat["sources"][0]["formats"] == {"messages": len(TOPICS)} and chat["train_rows"] == len(TOPICS)
    assert prefs["sources"][0]["formats"] == {"preference": len(TOPICS)} and prefs["train_rows"] == len(
        TOPICS
    )
    first = json.loads((data / "prefs" / "train.jsonl").read_text().splitlines()[0])
    assert set(first) == {"prompt", "chosen", "rejected"} and first["rejected"] == "I do not know."
    assert "formats" not in result.stderr and "preference 6" in result.stdout
