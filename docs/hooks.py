"""mkdocs hooks: the tour notebook's page with its outputs; a placeholder for each step page not written yet.

The pipeline's step pages (study.md, classify.md, pyramid.md...) are written by the people who build
those steps. Until a page exists, the site shows a short placeholder in its place instead of failing
`mkdocs build --strict` on a nav entry or link to a missing file. A page that exists is never touched.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

# The notebooks shown as pages with their outputs: source in docs/, executed copy written by `make docs`
# (python -m gee_mining.tools.notebook_doc SOURCE EXECUTED), page generated here.
NOTEBOOK_PAGES = {"tour.md": ("notebooks/tour.ipynb", "runs/notebooks/tour.ipynb")}

PLACEHOLDERS = {
    "study.md": (
        "Step 3: the pixel study (LASSO)",
        "The LASSO path over bands and pairwise normalised differences, splits by image and metadata, "
        "ranked channel combinations (`gee_mining.ml.study`).",
    ),
    "classify.md": (
        "Step 3: classifiers on Earth Engine",
        "The chosen transformation and an `ee.Classifier` / `ee.Clusterer` deployed server-side, with "
        "accuracy and confusion matrices (`gee_mining.ml.classify`).",
    ),
    "pyramid.md": (
        "Step 4: the coarse-to-fine pyramid",
        "Search at zoom 14, refine at 15 and 16 where the coarse level says so, YOLO only at fine levels; "
        "level figures and a cost table (`gee_mining.pyramid`).",
    ),
}


def on_files(files, config):
    for name, (title, what) in PLACEHOLDERS.items():
        if files.get_file_from_path(name) is None:
            content = (
                f"# {title}\n\n!!! note \"This page is being written\"\n    {what}\n\n"
                "    Its Python API, command line and Code Editor script will be documented here when the step "
                "lands; meanwhile see [the steps overview](steps.md).\n"
            )
            files.append(File.generated(config, name, content=content))
    for name, (source, executed) in NOTEBOOK_PAGES.items():
        files.append(File.generated(config, name, content=_notebook_page(config, source, executed)))
    return files


def _notebook_page(config, source: str, executed: str) -> str:
    """The notebook's page: rendered from its executed copy when that ran this very source, else code only."""
    from gee_mining.tools.notebook_doc import executed_copy, notebook_markdown

    root = Path(config.config_file_path).parent
    src = Path(config.docs_dir) / source
    copy = executed_copy(src, root / executed)
    return notebook_markdown(copy or src, raw_link=source, executed=copy is not None)
