"""``python -m server serve ...``: the same as the ``agent-jobs`` console script."""

from server.cli import main

raise SystemExit(main())
