"""Glue between recipe specs and the TRL/transformers trainers: arguments, LoRA config, callbacks, outputs."""
