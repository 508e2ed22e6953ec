"""Building blocks of scripts/generate_data.py (deterministic bundled-data generator)."""
