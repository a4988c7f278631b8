"""One place where a bad call becomes a typed refusal a model can act on.

fastmcp validates arguments with pydantic and, left alone, sends pydantic's own text to the
client (``1 validation error for call[create_session] ... https://errors.pydantic.dev/...``).
This middleware turns every such failure, for every tool, resource template and prompt,
built-in or plugin, into ``InvalidArgument: <argument>: <what is wrong>`` in plain words. It also
names unknown tools, resources and prompts with a typed error, and normalises resource URIs
(RFC 3986: dot segments removed) before they are matched, so every client gets the same answer
whether or not its own library normalises them.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from fastmcp.exceptions import NotFoundError, ToolError
from fastmcp.exceptions import ValidationError as FastMCPValidationError
from fastmcp.server.middleware import Middleware
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from raykernel.errors import (
    InvalidArgument,
    NotFound,
    PromptNotFound,
    RaykernelError,
    ResourceNotFound,
    ToolNotFound,
)

INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

_LIMIT_WORDS = {
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "multiple_of": "must be a multiple of {multiple_of}",
    "string_too_long": "must have at most {max_length} characters",
    "too_long": "must have at most {max_length} items",
    "string_pattern_mismatch": "must match the pattern {pattern}",
    "literal_error": "must be one of {expected}",
    "enum": "must be one of {expected}",
}
_TYPE_WORDS = {
    "missing": "is required",
    "missing_argument": "is required",
    "unexpected_keyword_argument": "is not an argument here",
    "extra_forbidden": "is not an argument here",
    "unexpected_positional_argument": "is not an argument here",
    "string_type": "must be a string",
    "string_unicode": "must be a valid Unicode string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "none_required": "must be null",
    "json_invalid": "is not valid JSON",
}


def _argument(loc: tuple[Any, ...]) -> str:
    """``('packages', 0)`` -> ``packages[0]``; pydantic's union-member tags are left out."""
    if not loc:
        return "arguments"
    name = str(loc[0])
    if not name.isidentifier():  # a client's made-up name: shown quoted, never raw
        name = repr(name[:60])
    for part in loc[1:]:
        if isinstance(part, int):
            name += f"[{part}]"
        elif not _is_union_tag(part):
            name += f"[{part!r}]"
    return name


def _is_union_tag(part: object) -> bool:
    # pydantic names the member of a union it tried ('str', 'dict[str,float]', 'none', ...).
    return isinstance(part, str) and (
        part in {"str", "int", "float", "bool", "none", "list", "dict"}
        or bool(re.fullmatch(r"(list|dict|tuple|set|function-\w+)\[.*\]", part))
        or part.startswith("literal[")
    )


def _what_is_wrong(error: dict[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in ("string_too_short", "too_short"):
        least = ctx.get("min_length", 1)
        if least == 1:
            return "must not be empty"
        unit = "characters" if kind == "string_too_short" else "items"
        return f"must have at least {least} {unit}"
    if kind in _LIMIT_WORDS:
        try:
            return _LIMIT_WORDS[kind].format(**ctx)
        except (KeyError, IndexError):
            pass
    if kind in _TYPE_WORDS:
        return _TYPE_WORDS[kind]
    message = str(error.get("msg", "is not valid"))
    # pydantic's wording, made plain: "Input should be X" -> "must be X".
    message = re.sub(r"^(Input|Value) should (be|have)", r"must \2", message)
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return message[:300]


def typed_from_validation(exc: ValidationError) -> RaykernelError:
    """A pydantic failure as one typed error naming each bad argument.

    A validator that raised a raykernel error (a session id check, say) keeps its kind and
    message; everything else is ``InvalidArgument``."""
    parts: list[str] = []
    kinds: set[type[RaykernelError]] = set()
    errors = exc.errors(include_url=False, include_input=False)
    seen: set[str] = set()
    for error in errors:
        argument = _argument(tuple(error.get("loc") or ()))
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, RaykernelError):
            kinds.add(type(cause))
            text = f"{argument}: {cause.message}"
        else:
            kinds.add(InvalidArgument)
            text = f"{argument}: {_what_is_wrong(error)}"
        if argument in seen:  # one line per argument: union members repeat it
            continue
        seen.add(argument)
        parts.append(text)
    kind = kinds.pop() if len(kinds) == 1 else InvalidArgument
    return kind("; ".join(parts) or "the arguments are not valid")


def typed_from_fastmcp(exc: FastMCPValidationError) -> RaykernelError:
    """fastmcp's own validation failures (pydantic's, or its plain ones for prompts)."""
    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        return typed_from_validation(cause)
    text = str(exc)
    missing = re.match(r"Missing required arguments?: \{(.*)\}", text)
    if missing:
        names = [n.strip(" '\"") for n in missing.group(1).split(",") if n.strip()]
        return InvalidArgument("; ".join(f"{name}: is required" for name in names))
    return InvalidArgument(re.sub(r"https?://\S+", "", text).strip()[:300])


def normalise_uri(uri: str) -> str:
    """RFC 3986 normalisation: percent-encoded unreserved characters decoded, dot segments
    removed. ``raykernel://outputs/a/../b`` is ``raykernel://outputs/b``; the kind of resource
    (the authority) cannot be climbed out of."""
    parts = urlsplit(uri)
    path = re.sub(
        r"%(2[dDeE]|5[fF]|7[eE]|[46][1-9a-fA-F]|[57][0-9aA]|3[0-9])",
        lambda m: unquote(m.group(0)),
        parts.path,
    )
    if path:
        trailing = path.endswith("/") and len(path) > 1
        path = posixpath.normpath(path)
        path = "/" + path.lstrip("/") if parts.netloc or path.startswith("/") else path
        if path in ("/.", "."):
            path = "/"
        if trailing and not path.endswith("/"):
            path += "/"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def tool_error(error: RaykernelError) -> ToolError:
    """A tool's refusal: an error result whose text starts with the kind."""
    return ToolError(str(error))


def protocol_error(error: RaykernelError) -> MCPError:
    """Resources and prompts have no error result as tools do: a JSON-RPC error, whose text
    starts with the kind like a tool error's."""
    code = INVALID_PARAMS if isinstance(error, InvalidArgument | NotFound) else INTERNAL_ERROR
    return MCPError(code=code, message=str(error))


def _raykernel_cause(exc: BaseException) -> RaykernelError | None:
    link: BaseException | None = exc
    for _ in range(5):
        if link is None:
            return None
        if isinstance(link, RaykernelError):
            return link
        link = link.__cause__ or link.__context__
    return None


class TypedErrors(Middleware):
    async def on_call_tool(self, context: Any, call_next: Any) -> Any:
        try:
            return await call_next(context)
        except FastMCPValidationError as exc:
            raise tool_error(typed_from_fastmcp(exc)) from None
        except NotFoundError:
            name = str(context.message.name)[:100]
            raise tool_error(ToolNotFound(f"no tool named {name!r}")) from None

    async def on_read_resource(self, context: Any, call_next: Any) -> Any:
        uri = str(context.message.uri)
        normal = normalise_uri(uri)
        if normal != uri:
            context = context.copy(message=context.message.model_copy(update={"uri": normal}))
        missing = ResourceNotFound(f"no resource at {normal[:300]!r}")
        return await _protocol_call(call_next, context, missing)

    async def on_get_prompt(self, context: Any, call_next: Any) -> Any:
        missing = PromptNotFound(f"no prompt named {str(context.message.name)[:100]!r}")
        return await _protocol_call(call_next, context, missing)


async def _protocol_call(call_next: Any, context: Any, missing: RaykernelError) -> Any:
    """A resource read or prompt, its failures as typed JSON-RPC errors."""
    try:
        return await call_next(context)
    except FastMCPValidationError as exc:
        raise protocol_error(typed_from_fastmcp(exc)) from None
    except NotFoundError:
        raise protocol_error(missing) from None
    except MCPError:
        raise
    except Exception as exc:
        typed = _raykernel_cause(exc)
        if typed is None:
            raise
        raise protocol_error(typed) from None
