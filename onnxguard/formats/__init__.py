"""Output formats, one module per format (pip-audit style): ``render(report, ...) -> str``."""
