"""A Prometheus exporter for IPVS: ``python -m ipvs.exporter`` (``ipvs-exporter``).

Install with the extra ``ipvs[exporter]`` (it brings ``prometheus_client``).

    python -m ipvs.exporter --listen 127.0.0.1:9587 [--netns NAME ...]
        [--destination-labels all|none] [--include SERVICE ...]
        [--exclude SERVICE ...] [--rates]

Every scrape makes one ``table()`` listing (plus one ``info()``) per
namespace, on a kernel socket of its own, so concurrent scrapes never wait
for each other.  A failing listing gives ``ipvs_up 0`` and a log line; the
exporter keeps running.

Two ways to use the collector in a program of your own (the director does):

- ``IPVSCollector`` is a ``prometheus_client`` collector: register it on any
  ``CollectorRegistry`` and it yields metric families as usual (the generic
  path: correct, but ~2-3 s for 140,000 series).
- ``IPVSCollector.render()`` returns the same series as Prometheus text
  (format 0.0.4) built straight from the listing, some ten times faster;
  ``make_wsgi_app(collector, registry)`` serves that text followed by the
  registry's own metrics on ``/metrics``, and ``serve(...)`` runs that app
  on prometheus_client's threaded WSGI server.

The metric names, labels and types are those of the API contract ("Metrics
(Prometheus)"); docs/metrics.md is the reference.

The package's rooms: ``families.py`` (the metric families: names, help,
types, labels), ``collector.py`` (``IPVSCollector``: the scrape through the
library's public API, the handle pool, ``Snapshot``), ``render.py`` (the
generic path's metric families and the fast text), ``http.py`` (the WSGI
app and server), ``cli.py`` (``ipvs-exporter``).
"""

from __future__ import annotations

# SERVICE_LABELS, DESTINATION_LABELS, CONTENT_TYPE and parse_listen too, as
# from the module this package was
from ipvs import parse_service, service_string
from ipvs.exporter.cli import main
from ipvs.exporter.collector import IPVSCollector, ServiceFilter, Snapshot
from ipvs.exporter.families import (DESTINATION_LABELS, SERVICE_LABELS,  # noqa: F401
                                    service_labels)
from ipvs.exporter.http import (CONTENT_TYPE, make_wsgi_app, parse_listen,  # noqa: F401
                                serve)
from ipvs.exporter.http import DEFAULT_LISTEN as _DEFAULT_LISTEN

__all__ = ["IPVSCollector", "Snapshot", "ServiceFilter", "parse_service", "service_string",
           "service_labels", "make_wsgi_app", "serve", "main", "DEFAULT_LISTEN"]

#: where ``python -m ipvs.exporter`` listens unless ``--listen`` says otherwise
DEFAULT_LISTEN = _DEFAULT_LISTEN
