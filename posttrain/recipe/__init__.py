"""The recipe: schema (pydantic models) and loading (YAML with line numbers, --set overrides)."""

from posttrain.recipe.loader import load_recipe
from posttrain.recipe.schema import Recipe

__all__ = ["Recipe", "load_recipe"]
