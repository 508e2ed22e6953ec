"""How a `posttrain` command ends: exit status and one message for every kind of ending.

User mistakes (`UserError`, data_prep's `DataPrepError`, a command-line usage error, a
path the OS refuses) exit 2 with one `error:` line and a `--help` hint; a diverged
training run exits 1; Ctrl-C exits 130 (a rerun resumes); anything else is one
`internal error:` line and exit 1, with the traceback only under `--verbose`.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.markup import escape

from data_prep.errors import DataPrepError
from posttrain.errors import TrainingError, UserError
from posttrain.preemption import RESUMABLE_EXIT, Preempted


def run_app(app: typer.Typer, argv: list[str], *, verbose: Callable[[], bool], err_console: Console) -> int:
    """Run `app` on `argv`; every way it can end becomes an exit status and at most one message.

    `verbose()` is read after the command ran (the `--verbose` option sets it): then an
    unexpected error keeps its traceback.
    """
    def hint() -> None:
        _print_help_hint(app, argv, err_console)

    OUTPUT_DIR.clear()
    try:
        code = app(args=argv, prog_name="posttrain", standalone_mode=False)
    except (UserError, DataPrepError) as exc:  # data_prep's own error is the user's data to fix: exit 2
        err_console.print(f"[red]error:[/] {exc.render()}")
        hint()
        return 2
    except TrainingError as exc:
        err_console.print(f"[red]training failed:[/] {exc}")
        return 1
    except Preempted as exc:
        err_console.print(f"\n[yellow]preempted[/] ({escape(str(exc))}): finished work is kept; rerun the same "
                          f"command to resume (exit {RESUMABLE_EXIT}).")
        return RESUMABLE_EXIT
    except (KeyboardInterrupt, typer.Abort):
        err_console.print("\n[yellow]interrupted[/]: finished stages are kept; rerun the same command to resume.")
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:  # click's usage errors (typer vendors click: not `click.ClickException`)
        return _usage_error(exc, hint, err_console)
    except click.ClickException as exc:
        exc.show()
        return 2
    except click.exceptions.Abort:
        return 130
    except Exception as exc:  # a full disk, whichever library's write it stopped, or a name the OS refused
        if verbose():
            raise
        if is_disk_full(exc):
            err_console.print(f"[red]error:[/] {escape(disk_full_text(exc, output_dir=OUTPUT_DIR))}")
            return 1
        if not isinstance(exc, OSError):
            err_console.print(f"[red]internal error:[/] {type(exc).__name__}: {_one_line(str(exc))}\n"
                              "rerun with `posttrain --verbose ...` for the traceback, and please report it")
            return 1
        err_console.print(f"[red]error:[/] {escape(_os_error_text(exc))}")
        if exc.errno in _BAD_PATH_ERRNOS:
            hint()
            return 2
        return 1
    return code if isinstance(code, int) else 0


OUTPUT_DIR: list[Path] = []
"""The folder the running command writes under (its run directory), for a disk-full message that names it."""

_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_PATH_LOCALS = ("path", "db_path", "file", "filename", "json_file_path", "output_file", "out_file", "save_directory",
                "folder", "out_dir", "output_dir", "tmp")


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT, also when a library wrapped it in its own error (safetensors, torch.save)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
            return True
        if any(words in str(exc) for words in ("No space left on device", "Disk quota exceeded", "database or disk is full")):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_text(exc: BaseException, *, output_dir: list[Path] | None = None) -> str:
    """What was being written, where, and how much space is free there; what to do next."""
    target = getattr(exc, "filename", None) or _path_being_written(exc)
    folder = Path(target) if target else (output_dir[-1] if output_dir else Path.cwd())
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = f"{shutil.disk_usage(probe).free / 1e6:.1f} MB free"
    except OSError:
        free = "free space unknown"
    what = f"writing {target}" if target else f"writing under {folder}"
    return (f"no space left on device while {what} ({free} on its filesystem). Nothing half-written is kept "
            f"as finished: free some space and rerun the same command to go on from the last finished step.")


def _path_being_written(exc: BaseException) -> str | None:
    """The innermost frame's path-like local (`open(json_file_path, "w")` raises with no filename)."""
    tb = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for name in _PATH_LOCALS:
            value = frame.f_locals.get(name)
            if isinstance(value, (str, os.PathLike)) and os.sep in os.fspath(value):
                return os.fspath(value)
    return None


_BAD_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.ELOOP,
                    errno.EPERM, errno.EEXIST}


def _print_help_hint(app: typer.Typer, argv: list[str], err_console: Console) -> None:
    names = {c.name or c.callback.__name__ for c in app.registered_commands if c.callback is not None}
    command = next((a for a in argv if a in names), None)
    err_console.print(f"Try 'posttrain{' ' + command if command else ''} --help' for help.", style="dim")


def _os_error_text(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else ""
    if isinstance(where, str) and len(where) > 120:
        where = f"{where[:60]}…{where[-40:]} ({len(where)} characters)"
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}" if where else reason


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _usage_error(exc: typer.TyperException, hint: Callable[[], None], err_console: Console) -> int:
    """A command-line mistake: the help (no arguments at all), or one line saying what is wrong and the usage."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError":  # `posttrain` alone: the help is the answer
        exc.show()
        return 0
    message = _one_line(exc.format_message()) if hasattr(exc, "format_message") else _one_line(str(exc))
    err_console.print(f"[red]error:[/] {escape(message)}")
    if ctx is not None:
        usage = escape(ctx.get_usage().replace("Usage: ", "usage: ", 1))
        err_console.print(f"{usage}\nTry '{escape(ctx.command_path)} --help' for help.")
    else:  # some parser errors carry no context: name the command from the arguments
        hint()
    return int(getattr(exc, "exit_code", 2) or 2)
