"""The documentation site: the user guide and the API reference generated from the docstrings.

``mkdocs build --strict`` fails on any warning, so a docstring whose ``Args`` do not match its signature, a broken
link between pages or a reference to a missing object fails this test. The docs tools come with the ``test`` extra
(``pip install -e ".[test]"``); without them the build is skipped, unless ``FIP_REQUIRE_DOCS=1`` makes that a
failure.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Each reference page and names its rendered HTML must show.
REFERENCE_PAGES = {
    "fip": [
        "load",
        "apply",
        "FastOperator",
        "list_operators",
        "get_operator",
        "register_operator",
        "OperatorSpec",
        "Param",
        "list_models",
    ],
    "pipeline": ["run_approximation", "open_photo", "SizePolicy", "MAX_MEGAPIXELS"],
    "batch": ["plan_batch", "run_batch", "OutputOptions"],
    "build": ["BuildRequest", "split_photos"],
    "cards": ["ModelCard", "Approximator", "read_card"],
    "catalogue": ["open_model", "Catalogue", "list_models"],
    "plan": ["make_plan", "Plan", "PlanError", "AUTO_MAX_LOSS_DB"],
    "devices": ["resolve_device", "device_class", "available_memory"],
    "imaging": ["encode_image", "read_image_file", "PhotoMetadata", "OUTPUT_FORMATS"],
    "errors": ["FipError", "require_extra", "MissingExtraError"],
}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if importlib.util.find_spec("mkdocs") is None and os.environ.get("FIP_REQUIRE_DOCS") != "1":
        pytest.skip('mkdocs is not installed (pip install -e ".[docs]"); FIP_REQUIRE_DOCS=1 makes this a failure')
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{log[-4000:]}"
    assert "WARNING" not in log, log[-4000:]
    return out


@pytest.mark.parametrize("page", sorted(REFERENCE_PAGES))
def test_reference_page_documents_its_api(site, page):
    html = (site / "reference" / page / "index.html").read_text(encoding="utf-8")
    documented = set(re.findall(r'id="fip(?:\.\w+)*\.(\w+)"', html))
    missing = [name for name in REFERENCE_PAGES[page] if name not in documented]
    assert not missing, f"reference/{page} does not document {missing}"
    # Sphinx roles (:func:`x`) are shown as code, not as ":func:" text.
    assert not re.search(r":(func|class|meth|mod|data|attr|exc):<code>", html)


def test_reference_renders_docstring_sections(site):
    html = (site / "reference" / "pipeline" / "index.html").read_text(encoding="utf-8")
    run_approximation = html[html.index('id="fip.pipeline.run_approximation"') :]
    run_approximation = run_approximation[: run_approximation.index('id="fip.pipeline.run_reference"')]
    # The Args section became a parameter table naming the documented arguments.
    assert "Parameters:" in run_approximation
    for argument in ("model", "photo", "params", "request", "on_plan"):
        assert f"<code>{argument}</code>" in run_approximation


def test_user_guide_pages_are_built(site):
    for page in ("api", "operators", "plugins", "models", "data", "speed"):
        assert (site / page / "index.html").is_file(), page
    assert "reference/pipeline/" in (site / "index.html").read_text(encoding="utf-8")


# "a twelfth round", "round 4", "finding 6": research history, which belongs in the research log.
HISTORY = re.compile(r"\b(?:\w+(?:st|nd|rd|th)\s+round|round\s+\d+|finding\s+\d+)\b", re.IGNORECASE)


def test_docstrings_do_not_cite_research_history():
    cited = []
    for path in sorted((ROOT / "fip").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node, clean=False) or ""
                cited += [f"{path.relative_to(ROOT)}: {match.group(0)!r}" for match in HISTORY.finditer(docstring)]
    assert not cited, "docstrings say what the code does, not how it was found:\n" + "\n".join(cited)
