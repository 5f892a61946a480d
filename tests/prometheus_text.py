"""Prometheus text read back as {(sample name, sorted labels): value}, for
the exporter's unit and lab tests (prometheus_client's own parser)."""

from __future__ import annotations

from typing import Dict, Tuple

from prometheus_client.parser import text_string_to_metric_families

Series = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def series(text: str) -> Series:
    """{(sample name, sorted labels): value}; fails on a duplicate series."""
    out: Series = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, "duplicate series %r" % (key,)
            out[key] = s.value
    return out
