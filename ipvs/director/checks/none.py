"""The check that is no check: always a success (a real server without
checkers in keepalived.conf)."""

from __future__ import annotations

from typing import Optional, Tuple

from ipvs.director.checks.common import CheckType
from ipvs.director.config_records import CheckConfig

__all__ = ["CHECK"]


class NoCheck(CheckType):
    name = "none"
    needs_port = False

    async def run(self, c: CheckConfig) -> Tuple[str, Optional[int]]:
        return "no check", None


CHECK = NoCheck()
