"""Typed answers: an answer schema and the typed columns landed from it. Imports only ``api``."""
