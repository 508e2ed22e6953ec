"""Serving engines as local processes: start one on a free port of 127.0.0.1, wait until it answers, always stop it."""
