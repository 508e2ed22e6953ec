"""Model resolution, loading, LoRA lineage and merging."""
