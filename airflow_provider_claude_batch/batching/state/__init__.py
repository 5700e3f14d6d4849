"""Where everything is kept: storage paths and atomic writes, the work directory and run folder layout, the manifest, the index of who created a batch. Imports only ``api``."""
