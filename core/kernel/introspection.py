"""Completion and inspection from a live namespace, with jedi (what IPython itself uses).

Only names are resolved and attributes looked up; nothing the user wrote is called.
"""

from __future__ import annotations

from typing import Any

from raykernel.errors import InvalidArgument

from .capture import truncate_text

MAX_MATCHES = 200
DOC_CHARS = 8000


def _position(code: str, cursor_pos: int | None) -> tuple[int, int, int]:
    """(offset, line, column) for jedi, whose lines start at 1; default: end of code."""
    from parso import split_lines

    offset = len(code) if cursor_pos is None else cursor_pos
    if not 0 <= offset <= len(code):
        raise InvalidArgument(f"cursor_pos {cursor_pos} is outside the code (0..{len(code)})")
    # jedi counts lines as parso splits them (\r and \r\n end a line too, not only \n).
    lines = split_lines(code[:offset])
    return offset, len(lines), len(lines[-1])


def complete(namespace: dict[str, Any], code: str, cursor_pos: int | None) -> dict[str, Any]:
    import jedi

    offset, line, column = _position(code, cursor_pos)
    try:
        completions = jedi.Interpreter(code, [namespace]).complete(line, column)
    except Exception as exc:  # jedi fails on some half-typed code (a lone "[")
        return {**_nothing(offset), "note": f"no completion here ({_why(exc)})"}
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
    try:
        script = jedi.Interpreter(code, [namespace])
        names = script.infer(line, column) or script.help(line, column)
    except Exception as exc:
        return {"found": False, "note": f"nothing to inspect here ({_why(exc)})"}
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


def _nothing(offset: int) -> dict[str, Any]:
    return {"matches": [], "cursor_start": offset, "cursor_end": offset, "truncated": False}


def _why(exc: Exception) -> str:
    return f"jedi could not analyse the code: {type(exc).__name__}"
