"""AetherFS: dataset distribution over content-defined, encrypted, deduplicated blocks."""

__version__ = "0.1.0"
