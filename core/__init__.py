"""raykernel: stateful, isolated Python sessions for MCP clients, one Ray actor per session.

Importing this package is cheap on purpose: session actors import it too, and they must not pay
for the MCP front end.
"""

__version__ = "0.1.0"
