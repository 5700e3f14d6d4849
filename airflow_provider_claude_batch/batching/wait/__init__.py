"""Waiting for batches: the poller's decisions, the resume event, progress lines, cancelling. Imports only ``api``."""
