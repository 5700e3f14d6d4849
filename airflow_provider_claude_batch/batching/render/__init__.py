"""Rows to request lines: sources, rendering, content keys, chunks, and the staged run. Imports ``api`` and ``state``."""
