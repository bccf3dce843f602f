"""qscan: content scanner and compliance pipeline for qmail (composition root)."""

__version__ = "0.1.0"
