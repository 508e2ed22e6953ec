"""Mute lm-eval's INFO/WARNING chatter while it runs (its tqdm bars stay as a progress sign)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

_NOISY_LOGGERS = ("lm_eval", "lm-eval", "transformers", "datasets", "peft", "accelerate")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Raise the noisy libraries' log level to ERROR and silence warnings, restoring both after."""
    saved = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    try:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
