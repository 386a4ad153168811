"""agent-jobs MCP server: jobcore's job tools over stdio, SSE and streamable HTTP.

Kept light on purpose: ``agent-jobs serve`` checks its flags and environment before the MCP SDK
is imported. Modules: :mod:`.config` (flags, environment, policy flags), :mod:`.tokens` (the
token an HTTP server makes and keeps), :mod:`.schemas` (tool schemas from jobcore's models),
:mod:`.tools` (the job tool table and calls), :mod:`.info` (the ``server_info`` tool),
:mod:`.access` (token, Host and Origin lists), :mod:`.unreadable` (answers for stdio lines the
SDK cannot read), :mod:`.app` (the MCPServer and its transports), :mod:`.cli` (the console script).
"""
