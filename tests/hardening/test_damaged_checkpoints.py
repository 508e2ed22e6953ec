"""A checkpoint cut short by a kill or a full disk is skipped for the previous whole one, with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from posttrain.rundir import checkpoint_problem, usable_checkpoint


def write_checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    save_file({"w": torch.arange(1000, dtype=torch.float32)}, str(folder / "adapter_model.safetensors"))
    torch.save({"step": 1}, folder / "optimizer.pt")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": int(folder.name.split("-")[1])}))
    return folder


def cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_the_newest_whole_checkpoint_is_used_and_damaged_ones_are_named(tmp_path: Path) -> None:
    good = write_checkpoint(tmp_path / "checkpoint-2")
    for name, damage in (
        ("checkpoint-4", "adapter_model.safetensors"),
        ("checkpoint-6", "optimizer.pt"),
        ("checkpoint-8", "trainer_state.json"),
    ):
        cut(write_checkpoint(tmp_path / name) / damage)
    (write_checkpoint(tmp_path / "checkpoint-10") / "trainer_state.json").unlink()  # killed before the state

    found, skipped = usable_checkpoint(tmp_path)
    assert found == good
    assert [(p.name, why) for p, why in skipped] == [
        ("checkpoint-10", "no trainer_state.json (it was still being written)"),
        ("checkpoint-8", "trainer_state.json is cut short"),
        ("checkpoint-6", "optimizer.pt is cut short"),
        ("checkpoint-4", "adapter_model.safetensors is cut short"),
    ]
    assert checkpoint_problem(good) is None


def test_no_whole_checkpoint_means_start_over(tmp_path: Path) -> None:
    cut(write_checkpoint(tmp_path / "checkpoint-2") / "adapter_model.safetensors", keep=0.99)
    assert usable_checkpoint(tmp_path)[0] is None
    assert usable_checkpoint(tmp_path / "missing") == (None, [])
