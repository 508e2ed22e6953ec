"""Artifacts for serving engines: PEFT adapter folders with model cards, merged models."""
