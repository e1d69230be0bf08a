"""Sphinx configuration: Markdown pages (MyST), API reference from docstrings (autodoc)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "graphsurgery"
author = "The graphsurgery authors"
copyright = "2026, The graphsurgery authors"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
master_doc = "index"
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "graphsurgery"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_typehints = "none"
autodoc_mock_imports = ["onnxruntime", "onnx_graphsurgeon", "torch", "netron"]
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing"]
nitpicky = False
