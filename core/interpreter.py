"""A plain Python interpreter: one namespace, Jupyter-style execution, capped capture.

No Ray here: the session actor is a thin shell over this class, and tests drive it directly.
"""

from __future__ import annotations

import ast
import base64
import builtins
import contextlib
import importlib
import io
import json
import linecache
import os
import subprocess
import sys
import time
import traceback
import types
import zipfile
from pathlib import Path
from typing import Any

import cloudpickle

from . import display, interrupts, introspection
from .capture import CappedStream, truncate_text
from .display import (
    BINARY_TYPES,
    Display,
    DisplayCollector,
    bound_image,
    image_bytes,
    mime_bundle,
    safe_repr,
)
from .errors import InvalidArgument
from .history import History
from .live_output import LiveTail
from .packages import install_command, parse_requirements

_OWN_FILES = frozenset({__file__, interrupts.__file__, display.__file__})
IMAGE_SUFFIX = {"image/png": "png", "image/jpeg": "jpg"}


class _WriteWatcher:
    """Collects files opened for writing under one folder while a run is in progress.

    An audit hook sees every ``open``/``os.rename`` in the process for the price of a comparison,
    which is far cheaper than walking outputs/ before and after every run.
    """

    _active: _WriteWatcher | None = None
    _installed = False

    def __init__(self, folder: Path) -> None:
        self.prefix = str(folder) + os.sep
        self.created: dict[str, None] = {}

    def __enter__(self) -> _WriteWatcher:
        if not _WriteWatcher._installed:
            sys.addaudithook(_WriteWatcher._hook)
            _WriteWatcher._installed = True
        _WriteWatcher._active = self
        return self

    def __exit__(self, *exc: object) -> None:
        _WriteWatcher._active = None

    @staticmethod
    def _hook(event: str, args: tuple[Any, ...]) -> None:
        watcher = _WriteWatcher._active
        if watcher is None:
            return
        if event == "open":
            path, mode, flags = args
            writing = (mode and any(c in mode for c in "wax+")) or (
                flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
            if writing:
                watcher._note(path)
        elif event in ("os.rename", "shutil.copyfile", "shutil.copytree"):
            watcher._note(args[1])

    def _note(self, path: object) -> None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str | os.PathLike):
            return
        full = os.path.abspath(path)
        if full.startswith(self.prefix) and full not in self.created:
            if not os.path.exists(full):
                self.created[full] = None

    def files(self, root: Path) -> list[str]:
        return [os.path.relpath(p, root) for p in self.created if os.path.isfile(p)]


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
        self.outputs = self.workspace / "outputs"
        self.scripts = self.workspace / "scripts"
        self.max_output_bytes = max_output_bytes
        self.hooks = hooks
        self.site_dir = site_dir
        self.live = live
        self.max_image_bytes = max_image_bytes
        self.display = Display()
        self.history = History()
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

    # -- execution -----------------------------------------------------------------------------

    def execute(self, code: str, token: str | None = None) -> dict[str, Any]:
        """Run ``code`` like a Jupyter cell and return the reply dict."""
        self.execution_count += 1
        count = self.execution_count
        if self.hooks is not None:
            try:
                self.hooks.before_execute(session_id=self.session_id, code=code)
            except Exception as exc:
                return self._reply(count, 0.0, "", "", _error("ExecutionRefused", str(exc), ""), [])
        filename = f"<cell-{count}>"
        try:
            body, last = _compile_cell(code, filename)
        except SyntaxError as exc:
            tb = "".join(traceback.format_exception_only(type(exc), exc))
            return self._finish(count, code, 0.0, "", "", _error_from(exc, tb), [])
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        return self._run(count, code, token, body, last, self.namespace)

    def run_script(self, path: Path, args: list[str], token: str | None = None) -> dict[str, Any]:
        """Run a script file in this session like IPython's ``%run``: as ``__main__``, with
        ``sys.argv`` set, and its top-level names merged into the namespace afterwards."""
        self.execution_count += 1
        count = self.execution_count
        source = Path(path).read_text(encoding="utf-8")
        filename = str(path)
        try:
            body = compile(source, filename, "exec")
        except SyntaxError as exc:
            tb = "".join(traceback.format_exception_only(type(exc), exc))
            return self._finish(count, source, 0.0, "", "", _error_from(exc, tb), [])
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
    ) -> dict[str, Any]:
        mirror = self.live.feed if self.live is not None else None
        out = CappedStream(self.max_output_bytes, "<stdout>", mirror)
        err = CappedStream(self.max_output_bytes, "<stderr>", mirror)
        collector = DisplayCollector()
        value: Any = None
        error: dict[str, Any] | None = None
        interrupted = False
        started = time.perf_counter()
        if self.live is not None:
            self.live.start(token or "")
        self.display.collector = collector
        with _WriteWatcher(self.outputs) as watcher:
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
        new_files = watcher.files(self.workspace)
        return self._finish(
            count,
            code,
            elapsed,
            out.getvalue(),
            err.getvalue(),
            error,
            new_files,
            bundles,
            has_result=value is not None,
            interrupted=interrupted,
        )

    def _finish(
        self,
        count: int,
        code: str,
        elapsed: float,
        stdout: str,
        stderr: str,
        error: dict[str, Any] | None,
        new_files: list[str],
        bundles: list[dict[str, Any]] | None = None,
        *,
        has_result: bool = False,
        interrupted: bool = False,
    ) -> dict[str, Any]:
        self.last_execution_time = time.time()
        rich = self._rich_output(count, bundles or [], has_result)
        reply = self._reply(count, elapsed, stdout, stderr, error, new_files, rich)
        if interrupted:
            reply["interrupted"] = True
        if self.hooks is not None:
            extras: dict[str, Any] = {}
            for contribution in self.hooks.after_execute(
                session_id=self.session_id, code=code, reply=reply
            ):
                if contribution:
                    extras.update(contribution)
            if extras:
                reply["extras"] = extras
        self.history.record(code, reply, self.last_execution_time - elapsed)
        return reply

    def _reply(
        self,
        count: int,
        elapsed: float,
        stdout: str,
        stderr: str,
        error: dict[str, Any] | None,
        new_files: list[str],
        rich: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        rich = rich or {}
        return {
            "success": error is None,
            "stdout": stdout,
            "stderr": stderr,
            "result": rich.get("result"),
            "result_data": rich.get("result_data", {}),
            "displays": rich.get("displays", []),
            "error": error,
            "execution_count": count,
            "execution_time": round(elapsed, 6),
            "session_id": self.session_id,
            "outputs": rich.get("outputs", []),
            "new_files": new_files,
            "images": rich.get("images", []),
        }

    def _rich_output(
        self, count: int, bundles: list[dict[str, Any]], has_result: bool
    ) -> dict[str, Any]:
        """Split display bundles into text forms (kept in the reply) and images (saved under
        outputs/ and inlined within ``max_image_bytes``); matplotlib figures join the images."""
        images = self._save_figures(count)
        displays: list[dict[str, Any]] = []
        result: str | None = None
        result_data: dict[str, Any] = {}
        for index, bundle in enumerate(bundles, 1):
            is_result = has_result and index == len(bundles)
            forms: dict[str, Any] = {}
            for mime, data in bundle.items():
                if mime not in BINARY_TYPES and (kept := self._bounded(data)) is not None:
                    forms[mime] = kept
            image_mime = next((m for m in IMAGE_SUFFIX if m in bundle), None)
            if image_mime is not None:
                name = f"{'result' if is_result else 'display'}_{self.session_id}_{count}_{index}"
                path = self.outputs / f"{name}.{IMAGE_SUFFIX[image_mime]}"
                try:
                    data = image_bytes(bundle[image_mime])
                    self.outputs.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                    image = self._image_entry(
                        path, data, image_mime, "result" if is_result else "display"
                    )
                    images.append(image)
                    forms["image"] = image["path"]
                except (OSError, ValueError):
                    pass
            if is_result:
                result = forms.pop("text/plain", None)
                result_data = forms
            else:
                displays.append(forms)
        return {
            "result": result,
            "result_data": result_data,
            "displays": displays,
            "images": images,
            "outputs": [image["path"] for image in images],
        }

    def _bounded(self, data: Any) -> Any:
        """A text form cut to the output limit; JSON dropped (None) when it is too large."""
        if isinstance(data, str):
            return truncate_text(data, self.max_output_bytes)
        if len(json.dumps(data, default=str)) > self.max_output_bytes:
            return None
        return data

    def _image_entry(self, path: Path, data: bytes, mime: str, source: str) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "path": os.path.relpath(path, self.workspace),
            "mime_type": mime,
            "source": source,
            "size_bytes": len(data),
        }
        bounded = bound_image(data, mime, self.max_image_bytes)
        if bounded is None:
            entry["data"] = None
            entry["note"] = (
                f"image is {len(data)} bytes, above max_image_bytes={self.max_image_bytes}, "
                "and could not be downscaled; read it from its file"
            )
        else:
            inline, inline_mime = bounded
            entry["data"] = base64.b64encode(inline).decode("ascii")
            entry["inline_mime_type"] = inline_mime
            if inline is not data:
                entry["note"] = (
                    f"downscaled to {len(inline)} bytes for display; the file is full size"
                )
        return entry

    def _save_figures(self, count: int) -> list[dict[str, Any]]:
        # Only when the user already loaded pyplot: importing matplotlib costs ~0.5 s.
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return []
        images: list[dict[str, Any]] = []
        try:
            numbers = plt.get_fignums()
            if numbers:
                self.outputs.mkdir(parents=True, exist_ok=True)
            for index, number in enumerate(numbers, 1):
                figure = plt.figure(number)
                path = self.outputs / f"figure_{self.session_id}_{count}_{index}.png"
                buffer = io.BytesIO()
                figure.savefig(buffer, format="png", bbox_inches="tight")
                data = buffer.getvalue()
                path.write_bytes(data)
                images.append(self._image_entry(path, data, "image/png", "figure"))
        finally:
            plt.close("all")
        return images

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

    def save_snapshot(self, path: Path) -> dict[str, Any]:
        """Write the picklable part of the namespace to ``path`` (a zip of one pickle per name
        and a JSON manifest); name what could not be pickled."""
        snap = self.snapshot()
        path.parent.mkdir(parents=True, exist_ok=True)
        manifest = {
            "session_id": self.session_id,
            "names": list(snap["blobs"]),
            "not_preserved": snap["not_preserved"],
            "created_at": time.time(),
        }
        tmp = path.with_name(path.name + ".partial")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("manifest.json", json.dumps(manifest))
            for index, blob in enumerate(snap["blobs"].values()):
                archive.writestr(f"values/{index}.pkl", blob)
        os.replace(tmp, path)
        return {
            "saved": sorted(snap["blobs"]),
            "not_preserved": snap["not_preserved"],
            "size_bytes": path.stat().st_size,
        }

    def load_snapshot(self, path: Path) -> dict[str, Any]:
        """Restore the names saved by ``save_snapshot`` into this namespace."""
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            blobs = {
                name: archive.read(f"values/{index}.pkl")
                for index, name in enumerate(manifest["names"])
            }
        report = self.restore(blobs)
        report["not_preserved"].update(manifest.get("not_preserved", {}))
        report["snapshot_of"] = manifest.get("session_id")
        return report

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

    def get_history(self, last: int | None = None) -> list[dict[str, Any]]:
        return self.history.last(last)

    def complete(self, code: str, cursor_pos: int | None = None) -> dict[str, Any]:
        return introspection.complete(self.namespace, code, cursor_pos)

    def inspect(self, code: str, cursor_pos: int | None = None) -> dict[str, Any]:
        return introspection.inspect(self.namespace, code, cursor_pos)

    # -- packages -------------------------------------------------------------------------------

    def install(
        self,
        specs: list[str],
        *,
        allow_urls: bool = False,
        timeout: float = 600.0,
        token: str | None = None,
    ) -> dict[str, Any]:
        """Install packages into this session's own directory, importable at once."""
        if self.site_dir is None:
            raise RuntimeError("this interpreter has no package directory")
        requirements = parse_requirements(specs, allow_urls=allow_urls)
        self.site_dir.mkdir(parents=True, exist_ok=True)
        command = install_command(requirements, self.site_dir)
        self._token = token
        if self.live is not None:
            self.live.start(token or "")
        try:
            stdout, stderr, ok = _run_streaming(command, timeout, self.live)
        except KeyboardInterrupt:
            stdout, stderr, ok = "", "install interrupted", False
        finally:
            self._token = None
            if self.live is not None:
                self.live.stop()
        if ok:
            self._activate_site_dir()
        return {
            "success": ok,
            "installed": [r.name for r in requirements] if ok else [],
            "stdout": truncate_text(stdout, self.max_output_bytes),
            "stderr": truncate_text(stderr, self.max_output_bytes),
        }

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


def _error(ename: str, evalue: str, tb: str) -> dict[str, Any]:
    return {"ename": ename, "evalue": evalue, "traceback": tb}


def _error_from(exc: BaseException, tb: str) -> dict[str, Any]:
    return _error(type(exc).__name__, truncate_text(str(exc), 10_000), truncate_text(tb, 50_000))


def _run_streaming(
    command: list[str], timeout: float, live: LiveTail | None
) -> tuple[str, str, bool]:
    """Run an installer, feeding its output to the live tail as it comes (progress for the
    client); (stdout, stderr, succeeded). Killed at ``timeout`` or on KeyboardInterrupt."""
    import threading

    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    captured: dict[str, list[str]] = {"out": [], "err": []}

    def pump(stream: Any, key: str) -> None:
        for line in stream:
            captured[key].append(line)
            if live is not None:
                live.feed(line)

    readers = [
        threading.Thread(target=pump, args=(proc.stdout, "out"), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, "err"), daemon=True),
    ]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        proc.wait()
    except KeyboardInterrupt:
        proc.kill()
        proc.wait()
        raise
    finally:
        for reader in readers:
            reader.join(timeout=5)
    stdout, stderr = "".join(captured["out"]), "".join(captured["err"])
    if timed_out:
        stderr += f"\ninstall timed out after {timeout:g} s"
    return stdout, stderr, not timed_out and proc.returncode == 0
