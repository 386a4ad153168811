"""The instructions a client gets at initialize name every tool the server lists."""

from __future__ import annotations

import re

from helpers import TOOLS

from server.app import INSTRUCTIONS


def test_instructions_name_every_tool():
    named = set(re.findall(r"[a-z_]+", INSTRUCTIONS))
    assert not TOOLS - named, sorted(TOOLS - named)
