"""Text normalization shared by the operators (hash keys, word and n-gram tokens)."""

from __future__ import annotations

import re
import unicodedata

_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
# Symbols stay tokens: "12 + 7" and "12 - 7" must not look alike to decontamination.
_TOKEN = re.compile(r"\w+|[^\w\s]")


def normalize_text(text: str) -> str:
    """Case, Unicode compatibility forms and whitespace folded: what 'the same text' means."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())
