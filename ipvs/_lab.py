"""Former private name of :mod:`ipvs.lab` (kept importable): the lab is
public now, import it from ``ipvs.lab``."""

from ipvs.lab import *  # noqa: F401,F403
from ipvs.lab import (CLIENT_ADDRESS, CLIENT_ADDRESS6, CLIENT_EXTRA, CLIENT_NET,  # noqa: F401
                      CLIENT_NET6, VIP, VIP6, Lab, LabError, wait_for)
