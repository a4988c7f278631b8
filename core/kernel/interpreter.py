"""A plain Python interpreter: one namespace, Jupyter-style execution, capped capture, and
interrupting the run in progress in it, with the run's token.

No Ray here: the session actor is a thin shell over this class, and tests drive it directly.

Interrupts (``Interrupts``): the kernel's parent asks for an interrupt of run ``token``; the
kernel's reader thread, if that run is the one in progress, sends SIGINT to the main thread
(``pthread_kill``: a blocking call such as ``time.sleep`` is woken, as with Ctrl-C). The handler
raises KeyboardInterrupt only while that run is still in progress, so a late request can never
hit the next run. Code that replaces the handler (or C code that never returns to Python) is not
stopped: the parent then kills the kernel.

Completion and inspection from a live namespace, with jedi (what IPython itself uses).

Only names are resolved and attributes looked up; nothing the user wrote is called.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import importlib
import linecache
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle

from raykernel.errors import InvalidArgument
from raykernel.kernel import display, functions
from raykernel.kernel.capture import CappedStream, LiveTail, WriteWatcher, truncate_text
from raykernel.kernel.display import Display, DisplayCollector, RichOutput, mime_bundle, safe_repr
from raykernel.replies import RunError, RunReply, run_error, run_reply

_OWN_FILES = frozenset({__file__, display.__file__})


class Interpreter:
    """One session's interpreter state and the ways to run code in it."""

    def __init__(
        self,
        session_id: str,
        workspace: Path,
        *,
        max_output_bytes: int = 100_000,
        hooks: Any = None,
        site_dir: Path | None = None,
        live: LiveTail | None = None,
        max_image_bytes: int = 1_000_000,
    ) -> None:
        self.session_id = session_id
        self.workspace = Path(workspace)
        self.max_output_bytes = max_output_bytes
        self.hooks = hooks
        self.site_dir = site_dir
        self.live = live
        self.rich = RichOutput(self.workspace, max_output_bytes, max_image_bytes)
        self.display = Display()
        self.namespace: dict[str, Any] = {}
        self.execution_count = 0
        self.last_execution_time: float | None = None
        self._token: str | None = None
        self.reset_namespace()
        if site_dir is not None:
            self.use_site_dir(site_dir)

    # -- state ---------------------------------------------------------------------------------

    def use_site_dir(self, site_dir: Path) -> None:
        """Install packages into ``site_dir``; make it importable now if it already exists."""
        self.site_dir = site_dir
        if site_dir.is_dir():
            self._activate_site_dir()

    def reset_namespace(self) -> None:
        self.namespace.clear()
        self.namespace.update({"__name__": "__main__", "__builtins__": builtins})

    def current_token(self) -> str | None:
        """The token of the run in progress, or None when no user code runs."""
        return self._token

    def call_function(self, payload: bytes, token: str, max_result_bytes: int) -> dict[str, Any]:
        """A plugin's function on the namespace, interruptible like a run; it leaves no trace
        in the history or the execution count."""
        self._token = token
        try:
            return functions.call(payload, self.namespace, max_result_bytes)
        finally:
            self._token = None

    # -- execution -----------------------------------------------------------------------------

    def _number(self, count: int | None) -> int:
        """This run's execution count: the one its session gives (the session keeps the
        timeline, across kernels), else the next."""
        self.execution_count = count if count is not None else self.execution_count + 1
        return self.execution_count

    def execute(self, code: str, token: str | None = None, count: int | None = None) -> RunReply:
        """Run ``code`` like a Jupyter cell and return its reply."""
        count = self._number(count)
        if self.hooks is not None:
            try:
                self.hooks.before_execute(session_id=self.session_id, code=code)
            except Exception as exc:
                refused = run_error("ExecutionRefused", str(exc))
                return run_reply(self.session_id, count, 0.0, error=refused)
        filename = f"<cell-{count}>"
        try:
            body, last = _compile_cell(code, filename)
        except SyntaxError as exc:
            tb = "".join(traceback.format_exception_only(type(exc), exc))
            return self._finish(count, code, 0.0, error=_error_from(exc, tb))
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        return self._run(count, code, token, body, last, self.namespace)

    def run_script(
        self,
        path: str | Path,
        source: str,
        args: list[str],
        token: str | None = None,
        count: int | None = None,
    ) -> RunReply:
        """Run a script in this session like IPython's ``%run``: as ``__main__``, with
        ``__file__`` and ``sys.argv`` its ``path``, and its top-level names merged into the
        namespace afterwards. ``source`` is its text as the session's actor read it (once:
        what runs is what the history shows); the file is not read again here."""
        count = self._number(count)
        filename = str(path)
        # Tracebacks show the lines that ran, not what the file holds by then.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            body = compile(source, filename, "exec")
        except SyntaxError as exc:
            tb = "".join(traceback.format_exception_only(type(exc), exc))
            return self._finish(count, source, 0.0, error=_error_from(exc, tb))
        script_ns: dict[str, Any] = {
            "__name__": "__main__",
            "__file__": filename,
            "__builtins__": builtins,
        }
        saved_argv = sys.argv
        sys.argv = [filename, *args]
        try:
            reply = self._run(count, source, token, body, None, script_ns)
        finally:
            sys.argv = saved_argv
        self.namespace.update(
            {k: v for k, v in script_ns.items() if not (k.startswith("__") and k.endswith("__"))}
        )
        return reply

    def _run(
        self,
        count: int,
        code: str,
        token: str | None,
        body: types.CodeType | None,
        last: types.CodeType | None,
        namespace: dict[str, Any],
    ) -> RunReply:
        mirror = self.live.feed if self.live is not None else None
        out = CappedStream(self.max_output_bytes, "<stdout>", mirror)
        err = CappedStream(self.max_output_bytes, "<stderr>", mirror)
        collector = DisplayCollector()
        value: Any = None
        error: RunError | None = None
        interrupted = False
        started = time.perf_counter()
        if self.live is not None:
            self.live.start(token or "")
        self.display.collector = collector
        with WriteWatcher(self.rich.outputs) as watcher:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                self._token = token
                try:
                    if body is not None:
                        exec(body, namespace)
                    if last is not None:
                        value = eval(last, namespace)
                except KeyboardInterrupt as exc:
                    interrupted = True
                    error = _error_from(exc, _format_user_traceback(exc))
                except BaseException as exc:
                    error = _error_from(exc, _format_user_traceback(exc))
                finally:
                    self._token = None
                    self.display.collector = None
                    if self.live is not None:
                        self.live.stop()
        elapsed = time.perf_counter() - started
        bundles = list(collector.bundles)
        if value is not None:
            namespace["_"] = value
            bundles.append(mime_bundle(value))
        return self._finish(
            count,
            code,
            elapsed,
            stdout=out.getvalue(),
            stderr=err.getvalue(),
            error=error,
            new_files=watcher.files(self.workspace),
            bundles=bundles,
            has_result=value is not None,
            interrupted=interrupted,
        )

    def _finish(
        self,
        count: int,
        code: str,
        elapsed: float,
        *,
        stdout: str = "",
        stderr: str = "",
        error: RunError | None = None,
        new_files: list[str] | None = None,
        bundles: list[dict[str, Any]] | None = None,
        has_result: bool = False,
        interrupted: bool = False,
    ) -> RunReply:
        self.last_execution_time = time.time()
        rich = self.rich.settle(self.session_id, count, bundles or [], has_result)
        reply = run_reply(
            self.session_id,
            count,
            round(elapsed, 6),
            stdout=stdout,
            stderr=stderr,
            error=error,
            new_files=new_files,
            interrupted=interrupted,
            **rich,
        )
        if self.hooks is not None:
            extras: dict[str, Any] = {}
            for contribution in self.hooks.after_execute(
                session_id=self.session_id, code=code, reply=reply
            ):
                if contribution:
                    extras.update(contribution)
            if extras:
                reply["extras"] = extras
        return reply

    # -- namespace ------------------------------------------------------------------------------

    def variables(self) -> list[dict[str, Any]]:
        """User-defined names with their type and a short repr."""
        rows = []
        for name, value in self.namespace.items():
            if name.startswith("_") or isinstance(value, types.ModuleType):
                continue
            row: dict[str, Any] = {
                "name": name,
                "type": type(value).__name__,
                "repr": truncate_text(safe_repr(value), 200),
            }
            shape = getattr(value, "shape", None)
            if isinstance(shape, tuple):
                row["shape"] = list(shape)
            rows.append(row)
        return rows

    def snapshot(self) -> dict[str, Any]:
        """Pickle every name that cloudpickle can carry; name the ones it cannot."""
        blobs: dict[str, bytes] = {}
        failed: dict[str, str] = {}
        for name, value in self.namespace.items():
            if name.startswith("__") and name.endswith("__"):
                continue
            try:
                blobs[name] = cloudpickle.dumps(value)
            except Exception as exc:
                failed[name] = f"{type(exc).__name__}: {truncate_text(str(exc), 200)}"
        return {"blobs": blobs, "not_preserved": failed}

    def restore(self, blobs: dict[str, bytes]) -> dict[str, Any]:
        restored, failed = [], {}
        for name, blob in blobs.items():
            try:
                self.namespace[name] = cloudpickle.loads(blob)
                restored.append(name)
            except Exception as exc:
                failed[name] = f"{type(exc).__name__}: {truncate_text(str(exc), 200)}"
        return {"restored": sorted(restored), "not_preserved": failed}

    def values(self, names: list[str]) -> dict[str, Any]:
        """Short reprs of ``names`` (None for a name the namespace lacks)."""
        return {
            name: truncate_text(safe_repr(self.namespace[name]), 1000)
            if name in self.namespace
            else None
            for name in names
        }

    def get_blob(self, name: str) -> bytes:
        """One variable, pickled (for transfer to another session)."""
        if name not in self.namespace or (name.startswith("__") and name.endswith("__")):
            raise InvalidArgument(f"no variable named {name!r} in session {self.session_id!r}")
        try:
            return cloudpickle.dumps(self.namespace[name])
        except Exception as exc:
            raise InvalidArgument(
                f"variable {name!r} cannot be copied (cloudpickle cannot carry it: "
                f"{truncate_text(str(exc), 200)})"
            ) from None

    def set_blob(self, name: str, blob: bytes) -> str:
        try:
            value = cloudpickle.loads(blob)
        except Exception as exc:
            raise InvalidArgument(
                f"the value cannot be loaded in session {self.session_id!r}: "
                f"{truncate_text(str(exc), 200)} (a module the value needs may be missing here)"
            ) from None
        self.namespace[name] = value
        return type(value).__name__

    # -- introspection ------------------------------------------------------------------------

    def complete(self, code: str, cursor_pos: int | None = None) -> dict[str, Any]:
        return completions(self.namespace, code, cursor_pos)

    def inspect(self, code: str, cursor_pos: int | None = None) -> dict[str, Any]:
        return inspection(self.namespace, code, cursor_pos)

    def _activate_site_dir(self) -> None:
        path = str(self.site_dir)
        if path not in sys.path:
            sys.path.insert(0, path)
        importlib.invalidate_caches()


def _compile_cell(code: str, filename: str) -> tuple[types.CodeType | None, types.CodeType | None]:
    """Split a cell: every statement but a trailing expression is exec'd; that one is eval'd."""
    tree = ast.parse(code, filename, "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        expression = ast.Expression(tree.body.pop().value)
        last = compile(expression, filename, "eval")
    body = compile(tree, filename, "exec") if tree.body else None
    return body, last


def _format_user_traceback(exc: BaseException) -> str:
    """The traceback without raykernel's own frames: the user should see only their code."""
    summary = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in summary if f.filename not in _OWN_FILES]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def _error_from(exc: BaseException, tb: str) -> RunError:
    return run_error(type(exc).__name__, truncate_text(str(exc), 10_000), truncate_text(tb, 50_000))


class Interrupts:
    def __init__(self, current_token: Callable[[], str | None]) -> None:
        self.current_token = current_token
        self._wanted: str | None = None
        self._main = threading.main_thread().ident

    def install(self) -> None:
        """Install the SIGINT handler; call on the main thread."""
        signal.signal(signal.SIGINT, self._handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def request(self, token: str) -> bool:
        """Interrupt run ``token`` if it is the one in progress; False if it is not."""
        if token != self.current_token():
            return False
        self._wanted = token
        assert self._main is not None
        signal.pthread_kill(self._main, signal.SIGINT)
        return True

    def _handler(self, signum: int, frame: object) -> None:
        token = self.current_token()
        if token is not None and token == self._wanted:
            self._wanted = None
            raise KeyboardInterrupt


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


def completions(namespace: dict[str, Any], code: str, cursor_pos: int | None) -> dict[str, Any]:
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


def inspection(namespace: dict[str, Any], code: str, cursor_pos: int | None) -> dict[str, Any]:
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
