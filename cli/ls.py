"""``agent-jobs ls`` without ``--json``: the page read straight from the store's index.

The verb's models (pydantic) would take most of a cold start, so the table is made from the rows
:mod:`jobcore.index` returns, with the same filter :func:`jobcore.verbs.list.list_jobs` builds:
the same jobs, newest first. Input the verb's model would judge otherwise than argparse (a
negative ``--limit``, an odd tag filter) is left to the verb, which refuses it in its own words.
"""

from __future__ import annotations

import argparse
import os
import re

from jobcore import index
from jobcore.store import Store

from . import render
from .exits import EXIT_OK, guarded

#: The tag filters the ``list_jobs`` input takes (a test keeps this the same as the model's).
TAG_FILTER = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*(?:\.\*)?")


def list_table(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int | None:
    """Print the table of jobs ``args`` asks for; None when the verb must judge the input first."""
    if args.limit < 0 or not all(TAG_FILTER.fullmatch(tag) for tag in args.tag):
        return None
    try:
        # As list_jobs without cwd: the real path of this folder.
        scope = None if args.all else os.path.realpath(os.getcwd())
    except OSError:
        return None  # this folder is gone: the verb says so

    def command() -> int:
        store = Store(args.root)
        store.prepare()
        wanted = index.Filter(scope=scope, state=args.state, tags=args.tag, after=None, limit=args.limit)
        page = index.read_page(store, wanted)
        render.job_table(str(store.root), page.jobs, page.truncated)
        return EXIT_OK

    return guarded(command, args, parser)
