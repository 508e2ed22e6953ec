"""Reward functions for GRPO: pure ``(completions, **columns) -> list[float]``.

Recipes name them by built-in short name (``exact_number``), by
``module:function`` (``rewards.math:exact_number``) or by
``path/to/file.py:function``; :func:`resolve_reward` checks them early.
Completions may be plain strings or conversational message lists.
"""

from rewards._common import completion_text
from rewards.registry import BUILTIN_REWARDS, check_reward_signature, resolve_reward

__all__ = ["BUILTIN_REWARDS", "check_reward_signature", "completion_text", "resolve_reward"]
