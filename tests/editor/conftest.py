"""Fixtures for the editor's browser tests: a live node, Debian's Chromium driven by Playwright,
a page per test that fails on console errors, and screenshots kept as artefacts."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.editor.editor_page import CHROMIUM, EditorPage
from tests.node_process import RunningNode

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="package")  # torn down with the package: sync Playwright runs a loop
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """A node with all roles, the test tasks and the tiny demo models (real diffusers, rembg
    and RRDBNet code paths on random weights), so image tasks run for real in the browser.
    The models are built here first, so the node's start does not race the tests' clocks."""
    data_dir = tmp_path_factory.mktemp("editor-node")
    try:
        from lightbox_node.runners import build_tiny_models
    except ImportError:  # no ml extra: the image-task tests skip
        extra: tuple[str, ...] = ()
    else:
        build_tiny_models(data_dir)
        extra = ("--set", "demo_models=true")
    running = RunningNode(data_dir, *extra)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="package")  # torn down with the package: sync Playwright runs a loop
def operator_token(node: RunningNode) -> str:
    return (node.data_dir / "api.token").read_text().strip()


@pytest.fixture(scope="package")  # torn down with the package: sync Playwright runs a loop
def browser() -> Iterator[object]:
    """Debian's Chromium under Playwright; tests that need it skip where either is missing."""
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="package")  # torn down with the package: sync Playwright runs a loop
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $ARTIFACTS_DIR/editor when set, else a pytest temp folder."""
    base = os.environ.get("ARTIFACTS_DIR")
    folder = Path(base) / "editor" if base else tmp_path_factory.mktemp("editor-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _open(browser, node, artifacts, request, *, token: str | None, size=(1280, 800)) -> EditorPage:
    context = browser.new_context(
        viewport={"width": size[0], "height": size[1]}, accept_downloads=True
    )
    if token:
        session = json.dumps({"kind": "operator", "token": token, "username": "operator"})
        context.add_init_script(f"localStorage.setItem('lightbox.session', {json.dumps(session)});")
    page = context.new_page()
    return EditorPage(page, node.editor, artifacts, request.node.name)


@pytest.fixture
def editor(browser, node, artifacts, operator_token, request) -> Iterator[EditorPage]:
    """The editor, signed in with the operator token, at 1280×800; no console errors allowed."""
    page = _open(browser, node, artifacts, request, token=operator_token)
    page.load()
    yield page
    page.close_and_check()


@pytest.fixture(scope="module")
def module_editor(browser, node, artifacts, operator_token, request) -> Iterator[EditorPage]:
    """One signed-in editor kept for a whole module (see `same_page_editor`)."""
    page = _open(browser, node, artifacts, request, token=operator_token)
    page.load()
    yield page
    page.close_and_check()


@pytest.fixture
def same_page_editor(module_editor, request) -> Iterator[EditorPage]:
    """The module's one editor, for tests that would otherwise each load the page and list
    the tasks again: it starts each test from a new blank picture with nothing staged, names
    the screenshots after the test, and fails the test that logged a console error."""
    module_editor.rename(request.node.name)
    module_editor.js(
        """() => { while (lightbox.jobs.discard()); lightbox.jobs.hide();
            lightbox.newPicture(1024, 768); }"""
    )
    module_editor.settle()
    yield module_editor
    module_editor.check_errors()


@pytest.fixture
def signed_out_editor(browser, node, artifacts, request) -> Iterator[EditorPage]:
    page = _open(browser, node, artifacts, request, token=None)
    yield page
    page.close_and_check()


@pytest.fixture
def open_editor(browser, node, artifacts, operator_token, request):
    """Open more editors (other window sizes); each is checked for console errors at the end."""
    pages: list[EditorPage] = []

    def make(size=(1280, 800)) -> EditorPage:
        page = _open(browser, node, artifacts, request, token=operator_token, size=size)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close_and_check()
