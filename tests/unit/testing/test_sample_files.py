"""The generated files are what they claim: deterministic, and read back by the media rules."""

from __future__ import annotations

from airflow_provider_claude_batch.batching.api import media
from airflow_provider_claude_batch.testing.sample_files import make_gif, make_pdf, make_png


def test_generated_files_are_valid_and_deterministic() -> None:
    pdf = make_pdf([["Invoice (1)", "Total"], ["page two"]], padding=5000)
    assert pdf == make_pdf([["Invoice (1)", "Total"], ["page two"]], padding=5000)
    assert media.inspect(pdf).pages == 2 and len(pdf) > 5000
    assert (media.inspect(make_png(7, 9)).width, media.inspect(make_png(7, 9)).height) == (7, 9)
    assert media.inspect(make_gif(3, 4)).media_type == "image/gif"
