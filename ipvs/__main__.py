"""``python -m ipvs``: the ipvsadm-compatible command line (see ipvs.cli)."""

import sys

from ipvs.cli import main

if __name__ == "__main__":
    sys.exit(main())
