"""ipvs-director: keeps virtual services in the kernel with each real
server's weight following its health checks (``ipvs-director -c FILE``).

See docs/director.md.  Needs the extra ``ipvs[director]``.
"""

from __future__ import annotations

from ipvs.director.config import ConfigError, Config, load, parse, service_name

__all__ = ["ConfigError", "Config", "load", "parse", "service_name"]
