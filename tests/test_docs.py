"""Every python block of README.md and docs/ runs as written.

A page's blocks run in order as one script, as a reader copies them:
a later block may use what an earlier one defined, never anything the page
does not show. docs/extending.md and docs/multi_dataset.md are run by their
own tests (tests/test_extending.py, tests/test_recipe_multi_dataset.py),
which also check their numbers.
"""

import importlib
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUN_HERE = [
    "README.md",
    "docs/quickstart.md",
    "docs/sharing.md",
    "docs/weighting.md",
    "docs/gradient_methods.md",
    "docs/distributed.md",
    "docs/evaluation_and_tuning.md",
    "docs/tabular.md",
]
RUN_ELSEWHERE = ["docs/extending.md", "docs/multi_dataset.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page):
    return BLOCK.findall((ROOT / page).read_text())


def test_every_page_with_python_blocks_is_run():
    pages = ["README.md"] + [
        str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs").glob("*.md"))
    ]
    with_code = {p for p in pages if python_blocks(p)}
    assert with_code == set(RUN_HERE) | set(RUN_ELSEWHERE)


@pytest.mark.parametrize("page", RUN_HERE)
def test_page_blocks_run_in_order(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = "\n".join(python_blocks(page))
    assert script
    exec(compile(script, page, "exec"), {"__name__": "__docs__"})


API_PAGES = {
    "keras_mtl": "api/keras_mtl.md",
    "keras_mtl.sharing": "api/sharing.md",
    "keras_mtl.layers": "api/layers.md",
    "keras_mtl.weighting": "api/weighting.md",
    "keras_mtl.data": "api/data.md",
    "keras_mtl.scheduling": "api/scheduling.md",
    "keras_mtl.evaluation": "api/evaluation.md",
    "keras_mtl.callbacks": "api/callbacks.md",
    "keras_mtl.tuner": "api/tuner.md",
    "keras_mtl.plotting": "api/plotting.md",
}
# Constants, documented where they are used.
NOT_DOCUMENTED_ALONE = {"registry", "ALL_OBJECTS_DICT", "AVERAGES"}


@pytest.mark.parametrize("module", list(API_PAGES))
def test_every_public_name_has_an_api_entry(module):
    public = set(importlib.import_module(module).__all__)
    public -= NOT_DOCUMENTED_ALONE
    if module == "keras_mtl":  # its submodules have pages of their own
        public = {n for n in public if n[0].isupper() or n == "build_mtl_model"}
    entries = re.findall(
        rf"^::: {re.escape(module)}\.(\w+)$",
        (ROOT / "docs" / API_PAGES[module]).read_text(),
        re.M,
    )
    assert sorted(entries) == sorted(public)


def test_api_site_builds_in_strict_mode(tmp_path):
    """A docstring mkdocstrings cannot read, or a broken link, fails."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q"]
        + ["--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "weighting" / "index.html").exists()
