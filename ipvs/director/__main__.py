"""``python -m ipvs.director``: the same as the ``ipvs-director`` command."""

from ipvs.director.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
