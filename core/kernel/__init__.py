"""Everything that runs where user code runs: the interpreter and what it needs (display,
capture, history, introspection, the live output tail, interrupts, containment, packages).

Plain Python: nothing here imports Ray or the MCP front end (tests/unit/test_layout.py checks
it in a fresh interpreter), so this package can run in a process that has neither.
"""
