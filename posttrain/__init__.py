"""posttrain: one declarative recipe for the whole post-training of a language model."""

__version__ = "0.1.0"
