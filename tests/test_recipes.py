"""Every shipped recipe validates; bad recipes fail with every problem and its line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from posttrain.errors import RecipeError
from posttrain.recipe.loader import load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ALL_YAML = sorted(RECIPES.rglob("*.yaml"))
ACCELERATE = RECIPES / "accelerate"


def test_recipes_folder_is_found() -> None:
    assert len(ALL_YAML) >= 5
    assert any(p.parent.name == "gpu" for p in ALL_YAML)


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(RECIPES)))
def test_every_yaml_under_recipes_validates(path: Path) -> None:
    if ACCELERATE in path.parents:
        config = YAML(typ="safe").load(path.read_text())
        assert config["distributed_type"] in {"MULTI_GPU", "FSDP", "DEEPSPEED"}
        return
    loaded = load_recipe(path)
    assert loaded.recipe.stages


BAD = """\
name: bad
model: {base: smollm2-135m-instruct}
datasets:
  chat:
    sources: [{path: ../data/quickstart/chat.jsonl}]
stages:
  - name: sft
    type: sft
    data: chat
    train: {lrr: 1.0e-4}
  - name: dpo
    type: dpo
    data: prefs
    beta: -1
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipes" / "bad.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "data" / "quickstart" / "chat.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("")
    path.write_text(text)
    return path


def test_three_mistakes_reported_at_once_with_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, BAD)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    problems = info.value.problems
    assert len(problems) == 3, problems
    assert f"{path}:10:13 stages[0].train.lrr: unknown key (did you mean 'lr'?)" in problems
    assert any(p.startswith(f"{path}:13:5 stages[1].data: no dataset named 'prefs'") for p in problems)
    assert any(p.startswith(f"{path}:14:5 stages[1].beta:") for p in problems)


def test_validate_cli_exits_2_without_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, BAD)
    result = subprocess.run(
        [sys.executable, "-m", "posttrain.cli", "validate", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for line in ("10:13", "13:5", "14:5"):
        assert f"{path}:{line}" in result.stderr


def test_missing_data_file_is_reported_at_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, BAD.replace("../data/quickstart/chat.jsonl", "nowhere.jsonl"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert any(p.startswith(f"{path}:5:") and "file not found: nowhere.jsonl" in p for p in info.value.problems)


def test_unknown_stage_type_and_bad_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, BAD.replace("type: dpo", "type: dpoo"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert any("unknown stage type 'dpoo'" in p for p in info.value.problems)

    path.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match=r"bad.yaml:\d+:\d+: not valid YAML"):
        load_recipe(path)


def test_set_overrides_address_stages_by_name(tmp_path: Path) -> None:
    loaded = load_recipe(RECIPES / "dpo.yaml", ["stages.sft.train.lr=5e-5", "stages.dpo.beta=0.3", "seed=7"])
    recipe = loaded.recipe
    assert recipe.stages[0].train.lr == 5e-5
    assert recipe.stages[1].beta == 0.3
    assert recipe.seed == 7
    with pytest.raises(RecipeError, match="bad --set"):
        load_recipe(RECIPES / "dpo.yaml", ["stages.nosuch.beta=1"])
    with pytest.raises(RecipeError) as info:
        load_recipe(RECIPES / "dpo.yaml", ["stages.dpo.beta=-2"])
    assert "(--set) stages[1].beta" in info.value.problems[0]


def test_after_must_name_an_earlier_stage(tmp_path: Path) -> None:
    text = BAD.replace("train: {lrr: 1.0e-4}", "after: dpo").replace("data: prefs", "data: chat").replace(
        "beta: -1", "beta: 0.1"
    )
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path, text))
    assert len(info.value.problems) == 2  # after names a later stage; dpo needs preference data
    assert any("it comes later" in p for p in info.value.problems)


def test_written_yaml_reads_back_the_same_in_yaml_1_1_and_1_2() -> None:
    """`on`, `yes`, `off`, `y` are booleans to a YAML 1.1 reader: the resolved recipe quotes them."""
    import yaml as pyyaml

    from posttrain.recipe.loader import dump_yaml

    data = {"dedup": {"method": "exact", "on": "all"}, "flags": ["yes", "no", "off", "y", "N", "~", "1e3", "0o17",
            "1:20", "0b11", "1_000", ".inf", "null", "True", "plain"], "n": 3, "f": 0.5, "b": False, "none": None,
            "floats": [5e-05, 1e20, -2.5e-7, 1.0, 1e-300, float("inf")]}
    text = dump_yaml(data)
    assert pyyaml.safe_load(text) == data
    assert YAML(typ="safe", pure=True).load(text) == data
    assert YAML(typ="rt").load(text) == data
