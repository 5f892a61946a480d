"""Sphinx configuration of the ipvs documentation site (scripts/docs.sh)."""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "docs", "_ext"))
# autodoc imports the package of this checkout (built in place, or installed
# with `pip install -e`), never another copy from the environment
sys.path.insert(0, ROOT)

project = "ipvs"
author = "The ipvs developers"
copyright = "the ipvs developers, MIT licence"
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
# Furo (https://pradyunsg.me/furo/): a maintained theme that works on phones;
# code blocks and tables scroll inside themselves (see _static/ipvs.css)
html_theme = "furo"
html_title = "ipvs"
html_short_title = "ipvs"
html_static_path = ["_static"]
html_css_files = ["ipvs.css"]
html_show_sourcelink = False
html_copy_source = False
html_theme_options = {
    "navigation_with_keys": True,
    "top_of_page_buttons": [],
    "light_css_variables": {
        "color-brand-primary": "#1f5f99",
        "color-brand-content": "#1f5f99",
    },
    "dark_css_variables": {
        "color-brand-primary": "#7cb3e6",
        "color-brand-content": "#7cb3e6",
    },
}
pygments_style = "friendly"
pygments_dark_style = "monokai"
