"""Sphinx configuration of the ipvs documentation site (scripts/docs.sh)."""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "docs", "_ext"))

project = "ipvs"
author = "The ipvs developers"
try:
    import ipvs
    release = version = ipvs.__version__
except Exception:  # pragma: no cover - autodoc then fails loudly anyway
    release = version = "0"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "benchplots",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "bench/*.txt", "README.md"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Type names in signatures that are not documented objects of ours
nitpicky = False
suppress_warnings = ["myst.header"]
html_theme = "alabaster"
html_title = "ipvs — Linux IPVS from Python"
html_static_path = []
html_show_sourcelink = False
html_theme_options = {
    "description": "Linux IPVS, the kernel's layer-4 load balancer, from Python",
    "fixed_sidebar": True,
    "page_width": "1100px",
}
