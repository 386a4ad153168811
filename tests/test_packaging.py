"""An installed copy has all of the code: every package (the engine, the server, the CLI), and the web page's files.

``pip install .`` (the README's install command) builds a wheel from ``pyproject.toml``: a subpackage
missing from its package list is missing from the install, whatever the checkout holds.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

REPO = Path(__file__).resolve().parent.parent


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_of_the_checkout_is_installed():
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("jobcore", "server", "cli")
        for init in (REPO / top).rglob("__init__.py")
    }
    include = _setuptools()["packages"]["find"]["include"]
    assert set(find_packages(str(REPO), include=include)) == on_disk
    assert {"jobcore.verbs", "jobcore.supervisor", "server.web"} <= on_disk


def test_the_web_page_ships_its_templates_and_static_files():
    patterns = _setuptools()["package-data"]["server.web"]
    web = REPO / "server" / "web"
    shipped = {path for pattern in patterns for path in web.glob(pattern)}
    needed = {*web.glob("templates/*"), *web.glob("static/*")}
    assert needed and needed <= shipped
