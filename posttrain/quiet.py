"""A quiet console: library warnings, logs and per-request progress bars go to the run's log.txt, not the screen.

posttrain's own lines (stage started, cached, eval scores, export written) and
its progress bars stay on the console. `--verbose` skips all of this and lets
the libraries print as they normally do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from posttrain.run_layout import RunDir

LIBRARY_LOGGERS = ("transformers", "datasets", "lm_eval", "lm-eval", "peft", "trl", "accelerate", "torch",
                   "huggingface_hub", "mlflow", "alembic", "httpx", "urllib3", "py.warnings")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def quiet_libraries() -> None:
    """Before any library is imported: no tqdm bars of theirs, warnings into logging, their loggers to the root."""
    # tqdm reads TQDM_* defaults when it is imported: this hides lm-eval's per-request bars, the
    # "Loading weights"/"Tokenizing" bars and the Trainer's bar (posttrain draws its own per stage).
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info")  # into log.txt, whose handler takes everything
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # else mlflow gives itself a stderr handler
    logging.captureWarnings(True)
    warnings.simplefilter("default")  # every warning is recorded once per place, in log.txt
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if not any(isinstance(h, logging.NullHandler) for h in root.handlers):
        root.addHandler(logging.NullHandler())  # no handler at all would make logging print WARNINGs to stderr
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).propagate = True


def detach_library_handlers() -> None:
    """Libraries that installed their own stderr handler (transformers, datasets) log through the root instead."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
        logger.propagate = True


def log_to_file(run_dir: Path) -> Path:
    """Append every log record (library logs and warnings included) to `<run_dir>/log.txt`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = RunDir(run_dir).log_file
    root = logging.getLogger()
    if not any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.resolve() for h in root.handlers):
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
    return path


@contextlib.contextmanager
def stderr_into(path: Path) -> Iterator[None]:
    """Send file descriptor 2 to `path` while the block runs: library bars and subprocess chatter included.

    lm-eval draws its per-request bars with an explicit `disable=False` and
    shells out to git, so neither the tqdm defaults nor logging can reach them;
    the descriptor can. posttrain's own lines go to stdout and stay visible. The
    descriptor is restored before an exception leaves the block, so errors and
    tracebacks reach the terminal.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
