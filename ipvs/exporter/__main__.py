"""``python -m ipvs.exporter``: serve /metrics until SIGTERM or SIGINT."""

import sys

from ipvs.exporter.cli import main

sys.exit(main())
