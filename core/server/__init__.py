"""The MCP front end: the command line, the fastmcp server built from plugins, the App that
tools work with, callers' active sessions, argument types and typed errors, HTTP security,
the stdio wire, progress notifications and background runs."""
