"""Completion and inspection from a live namespace, with jedi (what IPython itself uses).

Only names are resolved and attributes looked up; nothing the user wrote is called.
"""

from __future__ import annotations

from typing import Any

from .capture import truncate_text

MAX_MATCHES = 200
DOC_CHARS = 8000


def _position(code: str, cursor_pos: int | None) -> tuple[int, int, int]:
    """(offset, line, column) for jedi, whose lines start at 1; default: end of code."""
    offset = len(code) if cursor_pos is None else cursor_pos
    if not 0 <= offset <= len(code):
        raise ValueError(f"cursor_pos {cursor_pos} is outside the code (0..{len(code)})")
    before = code[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1)
    return offset, line, column


def complete(namespace: dict[str, Any], code: str, cursor_pos: int | None) -> dict[str, Any]:
    import jedi

    offset, line, column = _position(code, cursor_pos)
    completions = jedi.Interpreter(code, [namespace]).complete(line, column)
    matches: list[dict[str, Any]] = []
    prefix = 0
    for completion in completions[:MAX_MATCHES]:
        prefix = len(completion.name) - len(completion.complete)
        matches.append({"text": completion.name, "type": completion.type})
    return {
        "matches": matches,
        "cursor_start": offset - prefix,
        "cursor_end": offset,
        "truncated": len(completions) > MAX_MATCHES,
    }


def inspect(namespace: dict[str, Any], code: str, cursor_pos: int | None) -> dict[str, Any]:
    import jedi

    _offset, line, column = _position(code, cursor_pos)
    script = jedi.Interpreter(code, [namespace])
    names = script.infer(line, column) or script.help(line, column)
    if not names:
        return {"found": False}
    name = names[0]
    try:
        signatures = [s.to_string() for s in name.get_signatures()]
    except Exception:
        signatures = []
    return {
        "found": True,
        "name": name.name,
        "type": name.type,
        "full_name": name.full_name,
        "signatures": signatures[:10],
        "docstring": truncate_text(name.docstring(raw=True) or "", DOC_CHARS),
    }
