"""Pure data work (no Airflow imports): limits, rendering, chunking, results, manifest, pricing."""
