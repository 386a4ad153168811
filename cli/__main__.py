"""``python -m cli ...``: the same as the ``agent-jobs`` console script."""

from cli.main import main

raise SystemExit(main())
