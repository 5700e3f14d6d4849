"""Whether a row needs sending at all: the answer store, the reuse plan, claims across runs, awaited rows and answered rows. Imports ``api``, ``state``, ``schema`` and ``render``."""
