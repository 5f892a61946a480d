"""The exporter's metric families (names, help, types, labels): the
contract's ("Metrics (Prometheus)" of the API, docs/metrics.md), in one
place, and the label values of a service."""

from __future__ import annotations

import socket
from typing import Tuple

from ipvs import Protocol, Service, Stats

__all__ = ["SERVICE_LABELS", "DESTINATION_LABELS", "service_labels"]

SERVICE_LABELS = ("family", "protocol", "address", "port", "fwmark")
DESTINATION_LABELS = SERVICE_LABELS + ("destination_address", "destination_port")

#: the counters of a service or a real server that has none yet
ZERO = Stats()

# (exposed name, help text, type, stats fields: one, or (in, out) for direction)
STAT_FAMILIES = (
    ("connections_total", "Connections scheduled", "counter", ("connections",)),
    ("packets_total", "Packets, by direction (in: from clients, out: to clients)", "counter",
     ("packets_in", "packets_out")),
    ("bytes_total", "Bytes, by direction (in: from clients, out: to clients)", "counter",
     ("bytes_in", "bytes_out")),
)
RATE_FAMILIES = (
    ("connections_per_second", "The kernel's estimate of connections per second", "gauge",
     ("cps",)),
    ("packets_per_second", "The kernel's estimate of packets per second, by direction",
     "gauge", ("pps_in", "pps_out")),
    ("bytes_per_second", "The kernel's estimate of bytes per second, by direction", "gauge",
     ("bps_in", "bps_out")),
)
# what STAT_FAMILIES and RATE_FAMILIES become: (name prefix, help prefix) of
# the whole table's series, the services' and the real servers'
WHOLE_TABLE = ("ipvs_", "Whole table: ")
PER_SERVICE = ("ipvs_service_", "Per service: ")
PER_DESTINATION = ("ipvs_destination_", "Per real server: ")
# (name, help text, Destination attribute)
DEST_GAUGES = (
    ("ipvs_destination_weight", "Weight of the real server", "weight"),
    ("ipvs_destination_connections_active", "Active connections (established TCP)",
     "active_connections"),
    ("ipvs_destination_connections_inactive",
     "Inactive connections (closing TCP, UDP and other entries)", "inactive_connections"),
    ("ipvs_destination_connections_persistent", "Persistence templates",
     "persistent_connections"),
)
# (name, help text, type) of the series of a whole namespace
GLOBAL = (
    ("ipvs_up", "1 when the IPVS table could be read in this scrape, else 0", "gauge"),
    ("ipvs_info", "IPVS version of the kernel (value 1)", "gauge"),
    ("ipvs_connection_table_size", "Size of the kernel's connection hash table", "gauge"),
)

_PROTO_LABEL = {Protocol.TCP: "tcp", Protocol.UDP: "udp", Protocol.SCTP: "sctp"}


def _family_label(family: int) -> str:
    return "ipv6" if family == socket.AF_INET6 else "ipv4"


def service_labels(service: Service) -> Tuple[str, str, str, str, str]:
    """(family, protocol, address, port, fwmark) label values of a service."""
    if service.fwmark:
        return (_family_label(service.family), "fwmark", "", "0", str(service.fwmark))
    proto = _PROTO_LABEL.get(service.protocol)
    if proto is None:
        proto = str(int(service.protocol))
    return (_family_label(service.family), proto, str(service.address), str(service.port), "0")


def counter_base(name: str) -> str:
    """prometheus_client names a counter family without its ``_total``."""
    return name[:-6] if name.endswith("_total") else name
