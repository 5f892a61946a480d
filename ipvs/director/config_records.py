"""The records of a validated configuration file: what ``config.parse``
returns (:class:`Config` and the records it holds), frozen and comparable,
with no validation of their own (config_services.py, config_director.py
and each check type's module in checks/ make them)."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import ipvs

__all__ = ["AnnounceConfig", "CheckConfig", "Config", "DirectorConfig", "RealServerConfig",
           "ServiceConfig", "service_name", "canonical_service_name"]


@dataclasses.dataclass(frozen=True)
class CheckConfig:
    """One health check of one real server, fully resolved (target address
    and port included).  Two equal CheckConfig objects are one probe."""
    type: str
    address: str
    port: int
    interval: float = 2.0
    retry_interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 2
    initial: str = "down"
    params: Tuple[Tuple[str, Any], ...] = ()

    def param(self, name: str, default: Any = None) -> Any:
        for k, v in self.params:
            if k == name:
                return v
        return default


@dataclasses.dataclass(frozen=True)
class RealServerConfig:
    """A real server of a service: its destination (configured weight), the
    failure mode, its checks and notify commands."""
    destination: ipvs.Destination
    on_failure: str
    checks: Tuple[CheckConfig, ...]
    notify_up: Optional[Tuple[str, ...]] = None
    notify_down: Optional[Tuple[str, ...]] = None

    @property
    def key(self) -> Tuple[Any, ...]:
        return self.destination.key


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """A virtual service, its quorum settings and its real servers."""
    service: ipvs.Service
    name: str
    on_failure: str
    quorum: int
    hysteresis: int
    sorry_server: Optional[ipvs.Destination]
    real_servers: Tuple[RealServerConfig, ...]


@dataclasses.dataclass(frozen=True)
class AnnounceConfig:
    """``[director.announce]``: how the director tells a BGP speaker which
    VIPs to announce (active-active directors behind ECMP)."""
    via: str                        # "exabgp" or "interface"
    interface: str = "ipvs-vips"    # via "interface": the dummy interface of the VIPs
    when: str = "all"               # "all" or "any" of a VIP's services healthy
    withdraw_grace: float = 5.0     # s between withdrawing at a stop and the exit


@dataclasses.dataclass(frozen=True)
class DirectorConfig:
    """The ``[director]`` table."""
    netns: Optional[str] = None
    control: str = "/run/ipvs-director.sock"
    control_group: Optional[str] = None
    metrics: Optional[Tuple[str, int]] = None
    metrics_rates: bool = False
    drain_timeout: float = 300.0
    resync_interval: float = 60.0
    #: the ``[director.sync]`` table: the sync daemon the director keeps
    #: (its ``state`` is the role at start), or None
    sync: Optional[ipvs.Daemon] = None
    #: ``[director.sync]``'s ``keepalived_fifo``: keepalived's ``notify_fifo``,
    #: read by the director itself (None: roles come only from ``POST /role``)
    sync_fifo: Optional[str] = None
    #: ``[director.sync]``'s ``vrrp_instance``: the VRRP instance (or sync
    #: group) of the FIFO whose state is the director's role
    sync_vrrp_instance: Optional[str] = None
    state_file: Optional[str] = None        # None: beside the control socket; "": none
    max_checks_in_flight: Optional[int] = None  # None: from the open files limit
    #: ``[director] sysctl``: ((name, value text), ...) of net.ipv4.vs.* kept set
    sysctl: Tuple[Tuple[str, str], ...] = ()
    #: ``[director.announce]``, or None (no VIP announcing)
    announce: Optional[AnnounceConfig] = None

    @property
    def state_path(self) -> Optional[str]:
        """Where the state file is (None: kept nowhere)."""
        if self.state_file == "":
            return None
        if self.state_file is not None:
            return self.state_file
        from ipvs.director.state import default_path
        return default_path(self.control)


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole validated file."""
    director: DirectorConfig
    services: Tuple[ServiceConfig, ...]
    filename: str = "<config>"


#: the service string of the status, API, events and filters (``TCP
#: 10.0.0.1:80``, ``UDP [2001:db8::1]:53``, ``FWM 7``, ``FWM 7 IPv6``)
service_name = ipvs.service_string
#: a service string as an operator may type it, in `service_name`'s form
canonical_service_name = ipvs.canonical_service_string
