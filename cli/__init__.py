"""``agent-jobs``: the command line for people who supervise agents' jobs, over the store, no server needed.

Every command but ``serve`` runs a verb of :class:`jobcore.Jobs` and never imports the MCP SDK, so
``agent-jobs ls`` starts fast. Modules: :mod:`.main` (the parser and the exit codes),
:mod:`.commands` (one function per command), :mod:`.render` (tables, colour, times),
:mod:`.follow` (``logs -f``: the output as it grows, the end from the engine's wait).
See ``docs/cli.md``.
"""
