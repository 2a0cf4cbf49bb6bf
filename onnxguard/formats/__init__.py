"""Output formats: one module per format, each with a ``render(report, ...) -> str``."""
