"""agent-jobs MCP server: jobcore's job tools over stdio, SSE and streamable HTTP.

Kept light on purpose: ``agent-jobs serve`` checks its flags and environment before the MCP SDK
is imported. Modules: :mod:`.config` (flags, environment), :mod:`.schemas` (tool schemas from
jobcore's models), :mod:`.tools` (the tool table and calls), :mod:`.access` (token, Host and
Origin lists), :mod:`.app` (the MCPServer and its transports), :mod:`.cli` (the console script).
"""
