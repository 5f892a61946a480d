"""The director's Prometheus series (``[director] metrics``), with
prometheus_client; the IPVS table's own series come from the exporter's
``ipvs.exporter.IPVSCollector``, served by the exporter's fast renderer with
the director's registry after it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional, Tuple

from ipvs.exporter import IPVSCollector, service_labels, serve

if TYPE_CHECKING:
    from ipvs.director.core import Director

__all__ = ["DirectorMetrics", "service_labels"]

SERVICE_LABELS = ("family", "protocol", "address", "port", "fwmark")
DEST_LABELS = SERVICE_LABELS + ("destination_address", "destination_port")


def _dest_labels(st: Any, rs: Any) -> Tuple[str, ...]:
    """The labels of one real server of one service (DEST_LABELS)."""
    return service_labels(st.service) + (str(rs.destination.address), str(rs.destination.port))


class DirectorMetrics:
    """The ``ipvs_director_*`` series in their own registry."""

    def __init__(self, netns: Optional[str] = None, rates: bool = False) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        self.registry = CollectorRegistry()
        r = self.registry
        self.up = Gauge("ipvs_director_real_server_up",
                        "1 when the real server's checks say it is up (up or falling), else 0",
                        DEST_LABELS, registry=r)
        self.duration = Histogram("ipvs_director_check_duration_seconds",
                                  "Time one health check took", ["type"], registry=r,
                                  buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.checks = Counter("ipvs_director_checks_total", "Health checks run, by result",
                              ["type", "result"], registry=r)
        self.reloads = Counter("ipvs_director_reloads_total", "Configuration reloads, by result",
                               ["result"], registry=r)
        self.last_reload = Gauge("ipvs_director_last_reload_success_timestamp_seconds",
                                 "Unix time of the last configuration load that succeeded",
                                 registry=r)
        self.quorum_up = Gauge("ipvs_director_quorum_up",
                               "1 while the service's healthy weight meets its quorum",
                               SERVICE_LABELS, registry=r)
        self.sorry = Gauge("ipvs_director_sorry_active",
                           "1 while the sorry server takes the service's traffic",
                           SERVICE_LABELS, registry=r)
        self.role_state = Gauge("ipvs_director_role",
                                "1 for the director's current sync role (master or backup), "
                                "0 for the other; absent without [director.sync]",
                                ["state"], registry=r)
        self.drift_repairs = Counter(
            "ipvs_director_drift_repairs_total",
            "Changes someone else made to the director's services (or its sysctl settings, "
            "field=\"sysctl\" with empty service labels) that the director put back",
            SERVICE_LABELS + ("field",), registry=r)
        self.check_failures = Counter(
            "ipvs_director_real_server_check_failures_total",
            "Failed health checks of the real server (each failed run of each of its checks)",
            DEST_LABELS, registry=r)
        self.vip_announced = Gauge("ipvs_director_vip_announced",
                                   "1 while the director announces the VIP to its BGP speaker "
                                   "([director.announce]), 0 while withdrawn",
                                   ["vip"], registry=r)
        self.last_reload.set(time.time())
        self.collector = IPVSCollector(netns, rates=rates)
        self._server: Any = None

    def serve(self, host: str, port: int) -> None:
        """Serve /metrics on host:port in a background thread: the IPVS
        table's series, then the director's own."""
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._server, _thread = serve(self.collector, listen, self.registry)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # called by the director
    def check_done(self, type_: str, result: Any) -> None:
        self.checks.labels(type_, result.result).inc()
        self.duration.labels(type_).observe(result.duration)

    def check_failed(self, st: Any, rs: Any) -> None:
        labels = _dest_labels(st, rs)
        self.check_failures.labels(*labels).inc()

    def drift(self, service: Any, field: str) -> None:
        """One repair of ``field`` of ``service`` (None: a sysctl)."""
        labels = service_labels(service) if service is not None else ("",) * len(SERVICE_LABELS)
        self.drift_repairs.labels(*labels, field).inc()

    def vip(self, vip: str, announced: bool) -> None:
        self.vip_announced.labels(vip).set(1 if announced else 0)

    def vip_forget(self, vip: str) -> None:
        try:
            self.vip_announced.remove(vip)
        except KeyError:
            pass

    def server_state(self, st: Any, rs: Any) -> None:
        labels = _dest_labels(st, rs)
        self.up.labels(*labels).set(1 if rs.state in ("up", "falling") and not rs.draining else 0)

    def quorum(self, st: Any) -> None:
        labels = service_labels(st.service)
        self.quorum_up.labels(*labels).set(1 if st.quorum_up else 0)
        self.sorry.labels(*labels).set(1 if st.sorry_active else 0)

    def role(self, state: Optional[str]) -> None:
        """The current sync role ("master", "backup"), or None: no series."""
        if state is None:
            self.role_state.clear()
            return
        for s in ("master", "backup"):
            self.role_state.labels(s).set(1 if s == state else 0)

    def reload(self, ok: bool) -> None:
        self.reloads.labels("success" if ok else "failure").inc()
        if ok:
            self.last_reload.set(time.time())

    def after_round(self, director: "Director") -> None:
        """Rebuild the per-server and per-service gauges (forgetting servers
        and services that left): the one place they are set. A state change
        wakes the writer, so its round follows within milliseconds; the
        counters (checks, failures, drift, reloads) count at their events."""
        self.up.clear()
        self.quorum_up.clear()
        self.sorry.clear()
        for st in director.services.values():
            self.quorum(st)
            for rs in st.real_servers.values():
                self.server_state(st, rs)
