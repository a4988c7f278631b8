"""The confined kernel process, and only it: where user code runs (``python -m raykernel.kernel``)
with what it needs there (the interpreter, display, capture, introspection, session functions,
the live output tail, interrupts, checkpoint changes, code mode's calls, containment and
confinement, the wire to its session actor).

Plain Python: nothing here imports Ray, the MCP front end or the session actor's code
(tests/unit/test_layout.py checks it), so this package runs in a confined process that has none
of them, and in another interpreter (a user's environment) that only sees this package.
"""
