"""Airflow plugins shipped with the provider: the Claude Batches page."""
