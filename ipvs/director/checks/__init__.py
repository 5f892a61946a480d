"""Health checks of the director, on asyncio, each with a hard total deadline.

:func:`run_check` runs one check of a :class:`~ipvs.director.config.CheckConfig`
and returns a :class:`CheckResult`; the whole check (connect, TLS handshake,
request, reading the answer, a child process's run) must finish within the
check's ``timeout`` or it is cut and counted as ``"timeout"``.  A check opens
its sockets or its process only while it runs: nothing is kept between runs.

Each check type is one module of this package (keepalived's layout: each
checker its file), owning its keys in the configuration and their
validation, its run, and the conversion of its keepalived checker;
:data:`TYPES` lists them.  The configuration (config_checks.py) and
``ipvs-director convert`` (convert.py) reach a type only through it.
"""

from __future__ import annotations

from typing import Dict, Optional

from ipvs.director.checks import dns, file, http, misc, none, smtp, tcp, udp
from ipvs.director.checks.common import CheckResult, CheckType
from ipvs.director.checks.dns import dns_query
from ipvs.director.checks.http import MAX_BODY
from ipvs.director.config_records import CheckConfig

__all__ = ["CheckResult", "run_check", "dns_query", "MAX_BODY", "TYPES", "KEEPALIVED"]

#: every check type by its name (the ``type`` of a check), in the order
#: the configuration's messages list them
TYPES: Dict[str, CheckType] = {t.name: t for t in (
    tcp.CHECK, http.HTTP, http.HTTPS, udp.CHECK, dns.CHECK, smtp.CHECK, misc.CHECK,
    file.CHECK, none.CHECK)}

#: keepalived's checker keywords, each with the type it is converted to
KEEPALIVED: Dict[str, CheckType] = {kw: t for t in TYPES.values() for kw in t.keepalived}


async def run_check(check: CheckConfig, timeout: Optional[float] = None) -> CheckResult:
    """Run ``check`` once within its total deadline (``timeout`` overrides the
    check's own).  Never raises for a failing target: the result says it."""
    return await TYPES[check.type].check(check, check.timeout if timeout is None else timeout)
