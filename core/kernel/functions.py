"""Plugin functions run inside a session's kernel (``app.sessions.call_function``).

The function arrives by value (cloudpickle, from the front end: the kernel runs untrusted code
anyway, so unpickling what the server sends costs nothing). It is called with a read-only view
of the session's namespace and its own arguments; what it prints is dropped. Its value goes
back as JSON, never as a pickle: the session's own code could make any object's pickle run
code wherever it is unpickled, and the server must never unpickle what a kernel sends.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import io
import json
import math
import traceback
import types
from typing import Any

import cloudpickle

from raykernel.errors import RaykernelError


def call(payload: bytes, namespace: dict[str, Any], max_result_bytes: int) -> dict[str, Any]:
    """Run the shipped ``(fn, args, kwargs)``; a reply shaped like a run's (``success``,
    ``error``, ``interrupted``) with the value as JSON text under ``value_json``."""
    view = types.MappingProxyType(namespace)
    try:
        fn, args, kwargs = cloudpickle.loads(payload)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            value = fn(view, *args, **kwargs)
    except KeyboardInterrupt:
        return _failed("KeyboardInterrupt", "the function was interrupted", "", interrupted=True)
    except BaseException as exc:
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        failed = _failed(type(exc).__name__, str(exc), detail[-8000:])
        if isinstance(exc, RaykernelError):  # a refusal on purpose: it goes back as itself
            failed["error"]["raised"] = exc.to_wire()
        return failed
    try:
        text = json.dumps(_finite(value), allow_nan=False, default=_plain)
    except (TypeError, ValueError) as exc:
        return _failed(
            "ResultNotJSON",
            f"the function returned {type(value).__name__} data that is not JSON ({exc}): "
            "return dicts, lists, strings, numbers, booleans or None (NumPy and pandas "
            "scalars, arrays, timestamps, dates and decimals are converted)",
            "",
        )
    if len(text.encode()) > max_result_bytes:
        return _failed(
            "ResultTooLarge",
            f"the function's value is {len(text.encode())} bytes as JSON, above the "
            f"{max_result_bytes}-byte limit: return less (a summary, a page)",
            "",
        )
    return {"success": True, "error": None, "interrupted": False, "value_json": text}


def _finite(value: Any) -> Any:
    """NaN and infinities (common in data) as None, since JSON has no such numbers; a data
    library's scalar as a dict key as the plain value it stands for."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {_key(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _key(key: Any) -> Any:
    if isinstance(key, str | int | float | bool) or key is None:
        return key
    try:
        plain = _plain(key)
    except TypeError:
        return key  # json.dumps says what is wrong with it
    return plain if isinstance(plain, str | int | float | bool) or plain is None else str(key)


def _plain(value: Any) -> Any:
    """What data libraries give where JSON wants plain values (json.dumps' ``default``):
    NumPy scalars and arrays, pandas' timestamps and missing values, dates and times,
    decimals, sets. Anything else is not JSON (``TypeError``)."""
    kind = type(value)
    module = kind.__module__.split(".")[0]
    if module in ("numpy", "pandas"):
        if hasattr(value, "isoformat"):  # pandas.Timestamp, Timedelta (NaT has none)
            return None if str(value) == "NaT" else value.isoformat()
        if hasattr(value, "tolist"):  # numpy scalars and arrays
            return _finite(value.tolist())
        if str(value) in ("<NA>", "NaT"):
            return None
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return _finite(float(value))
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"{kind.__name__} is not JSON")


def _failed(ename: str, evalue: str, detail: str, interrupted: bool = False) -> dict[str, Any]:
    return {
        "success": False,
        "error": {"ename": ename, "evalue": evalue, "traceback": detail},
        "interrupted": interrupted,
        "value_json": None,
    }


# -- session tools (raykernel.server.session_tools): called through call_function -------


def describe_function(namespace: Any, function: str) -> dict[str, Any]:
    """In the session's kernel: ``function``'s input schema and docstring."""
    import inspect
    import json as json_

    fn = namespace.get(function)
    if fn is None or not callable(fn):
        raise NameError(f"the session has no function named {function!r}")
    try:
        signature = inspect.signature(fn, eval_str=True)
    except Exception:
        signature = inspect.signature(fn)
    properties: dict[str, Any] = {}
    required: list[str] = []
    defs: dict[str, Any] = {}
    extra = False
    for param in signature.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            continue
        if param.kind is param.VAR_KEYWORD:
            extra = True
            continue
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"{function}: argument {param.name!r} is positional-only (JSON names)")
        schema: dict[str, Any] = {}
        if param.annotation is not param.empty:
            try:
                import pydantic

                schema = pydantic.TypeAdapter(param.annotation).json_schema()
            except Exception:  # an annotation pydantic cannot describe: any JSON value
                schema = {}
            defs.update(schema.pop("$defs", {}))
        if param.default is param.empty:
            required.append(param.name)
        else:
            try:
                json_.dumps(param.default)
                schema["default"] = param.default
            except (TypeError, ValueError):
                pass
        properties[param.name] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    if extra:
        parameters["additionalProperties"] = True
    if defs:
        parameters["$defs"] = defs
    return {"parameters": parameters, "description": inspect.getdoc(fn) or ""}


def call_named(namespace: Any, function: str, arguments: dict[str, Any]) -> Any:
    """In the session's kernel: ``function(**arguments)``."""
    fn = namespace.get(function)
    if fn is None or not callable(fn):
        raise NameError(f"the session has no function named {function!r} any more")
    return fn(**arguments)
