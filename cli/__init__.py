"""``agent-jobs``: the command line for people who supervise agents' jobs, over the store, no server needed.

Every command but ``serve`` runs a verb of :class:`jobcore.Jobs` and never imports the MCP SDK;
``agent-jobs ls`` without ``--json`` reads the store's index directly, without the verbs' models,
so it starts fast. Modules: :mod:`.main` (the parser), :mod:`.exits` (the exit codes and the
one-line errors), :mod:`.commands` (one function per command), :mod:`.ls` (the table of ``ls``),
:mod:`.render` (tables, colour, times), :mod:`.follow` (``logs -f``: the output as it grows, the
end from the engine's wait).
See ``docs/cli.md``.
"""
