"""The command line answers every usage mistake with one message and exit 0 or 2, never a traceback.

Every command × {--help, nothing, an unknown option, a missing value, a bad type, a path
that does not exist, a path too long for the OS, `-`} goes through `run_cli`, the function
`posttrain` itself calls (in process, so 80+ cases take seconds); a few headline cases also
run as a user types them, in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.cli import app, run_cli

LONG = "x" * 5000  # longer than any file name the OS takes (ENAMETOOLONG)
MISSING = "no/such/place.yaml"

# command → (its required positional arguments for cases that need them, an option that takes a value,
#            an argv whose option value has the wrong type)
COMMANDS: dict[str, tuple[list[str], str, list[str]]] = {
    "run": (["RECIPE"], "--set", ["RECIPE", "--num-processes", "many"]),
    "validate": (["RECIPE"], "--set", ["RECIPE", "--set", "no-equals-sign"]),
    "plan": (["RECIPE"], "--runs-dir", ["RECIPE", "--set", "stages=["]),
    "data": (["RECIPE"], "--runs-dir", ["RECIPE", "--set", "=1"]),
    "leaderboard": ([], "--task", ["--limit", "ten"]),
    "eval": (["MODEL"], "--tasks", ["MODEL", "--limit", "ten"]),
    "export": (["RUN"], "--format", ["RUN", "--format", "notaformat"]),
    "report": (["RUN"], "--runs-dir", ["RUN", "--runs-dir", "RUNS_FILE"]),
    "compare": (["RUN", "RUN"], "--out", ["RUN", "RUN", "--out", "RUNS_FILE"]),
    "ui": ([], "--port", ["--port", "eighty"]),
}


def test_the_table_covers_every_command() -> None:
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert names == set(COMMANDS)


def _cases(recipe: str, run: str, runs_file: str) -> list[tuple[str, list[str]]]:
    def fill(args: list[str]) -> list[str]:
        table = {"RECIPE": recipe, "MODEL": run, "RUN": run, "RUNS_FILE": runs_file}
        return [table.get(a, a) for a in args]

    cases = [("top --help", ["--help"]), ("top nothing", []), ("top unknown option", ["--bogus"]),
             ("top unknown command", ["bogus"]), ("top -", ["-"]), ("top --verbose alone", ["--verbose"])]
    for command, (positional, valued, bad_type) in COMMANDS.items():
        placeholder = [MISSING] * len(positional)
        cases += [
            (f"{command} --help", [command, "--help"]),
            (f"{command} nothing", [command]),
            (f"{command} unknown option", [command, *fill(positional), "--bogus"]),
            (f"{command} missing value", [command, *fill(positional), valued]),
            (f"{command} bad type", [command, *fill(bad_type)]),
            (f"{command} nonexistent path", [command, *placeholder] if positional else [command, "--runs-dir", MISSING]),
            (f"{command} overlong path", [command, *[LONG] * len(positional)] if positional
             else [command, "--runs-dir", LONG]),
            (f"{command} -", [command, *["-"] * len(positional)] if positional else [command, "--runs-dir", "-"]),
        ]
    return cases


@pytest.fixture
def workspace(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A valid recipe, something that looks like a run directory, and a plain file where a folder is expected."""
    monkeypatch.chdir(tmp_path)
    # `posttrain ui` would serve until Ctrl-C: its arguments are checked, then the server returns at once.
    import posttrain.ui.server

    monkeypatch.setattr(posttrain.ui.server, "serve", lambda *args, **kwargs: None)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\nmodel: {{base: {tiny_model_dir}}}\n"
                      "stages: [{name: sft, type: sft, data: chat}]\n"
                      "datasets: {chat: {sources: [{path: chat.jsonl}]}}\n")
    (tmp_path / "chat.jsonl").write_text("")
    run = tmp_path / "runs" / "r"
    (run / "sft").mkdir(parents=True)
    (run / "sft" / "stage.json").write_text('{"status": "running"}')
    runs_file = tmp_path / "a-file"
    runs_file.write_text("not a folder")
    return {"recipe": str(recipe), "run": str(run), "runs_file": str(runs_file)}


def test_every_mistake_exits_0_or_2_with_one_message(workspace: dict[str, str], capsys) -> None:
    cases = _cases(workspace["recipe"], workspace["run"], workspace["runs_file"])
    assert len(cases) >= 75
    failures = []
    for name, argv in cases:
        try:
            code = run_cli(argv)
        except BaseException as exc:  # anything escaping is the bug this test exists for
            failures.append(f"{name}: raised {type(exc).__name__}: {exc}")
            continue
        out, err = capsys.readouterr()
        text = out + err
        if "Traceback" in text or code not in (0, 2):
            failures.append(f"{name}: exit {code}\n{text[-800:]}")
        elif code == 2 and not ("error:" in err or "✗" in err):
            failures.append(f"{name}: exit 2 without an error line\n{err[-800:]}")
        elif code == 2 and "error:" in err and "--help" not in err:
            failures.append(f"{name}: exit 2 without the usage hint\n{err[-800:]}")
        elif code == 0 and "--help" in argv and "Usage" not in out:
            failures.append(f"{name}: --help printed no usage\n{out[-400:]}")
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n\n" + "\n\n".join(failures)


def _posttrain(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "posttrain.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={**os.environ, "COLUMNS": "120"})


@pytest.mark.parametrize("argv", [
    [], ["--version"], ["run"], ["run", "RECIPE", "--bogus"], ["eval", "--help"], ["validate", LONG],
], ids=["bare", "version", "run-without-recipe", "run-bogus-option", "eval-help", "validate-overlong"])
def test_headline_cases_as_typed(argv: list[str], tmp_path: Path) -> None:
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "dpo.yaml"
    result = _posttrain(*[str(recipe) if a == "RECIPE" else a for a in argv], cwd=tmp_path)
    assert "Traceback" not in result.stdout + result.stderr
    if argv in ([], ["eval", "--help"]):
        assert result.returncode == 0 and "Usage" in result.stdout
    elif argv == ["--version"]:
        assert result.returncode == 0 and result.stdout.startswith("posttrain ")
    else:
        assert result.returncode == 2
        assert result.stderr.count("error:") + result.stderr.count("✗") == 1, result.stderr  # validate marks files ✗
        assert "--help" in result.stderr or "✗" in result.stderr, result.stderr


def test_overlong_task_name_in_a_recipe_is_one_problem(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A task name longer than any file name used to reach lm-eval's file lookup and crash with ENAMETOOLONG."""
    (tmp_path / "chat.jsonl").write_text("")
    recipe = tmp_path / "long-task.yaml"
    recipe.write_text(f"name: lt\nmodel: {{base: {tiny_model_dir}}}\n"
                      "datasets: {chat: {sources: [{path: chat.jsonl}]}}\n"
                      f"eval: {{tasks: [{'t' * 3000}, 'a/b*[c]']}}\n"
                      "stages: [{name: sft, type: sft, data: chat}]\n")
    result = _posttrain("validate", str(recipe), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("unknown eval task") == 2, result.stderr
