"""Output formats: each a small class with one method, ``render(report) -> str``."""
