"""The plugin API: everything a plugin may import from raykernel, in one place.

What is named here is documented in docs/plugins.md and kept stable across releases; every
other module of raykernel is internal and may change (a plugin that imports one will break).

    from raykernel.api import App, OptionalSessionId, WorkspacePath, hints, hookimpl
"""

from __future__ import annotations

from raykernel.errors import (
    ExecutionRefused,
    FileNotFound,
    FileTooLarge,
    FunctionFailed,
    InvalidArgument,
    InvalidSetting,
    KernelDied,
    MissingDependency,
    NotFound,
    PathOutsideWorkspace,
    RaykernelError,
    SessionBusy,
    SessionNotFound,
    SessionUnavailable,
)
from raykernel.hookspecs import hookimpl
from raykernel.replies import RunError, RunReply
from raykernel.server.app import App, current_app
from raykernel.server.arguments import (
    ForSession,
    OptionalSessionId,
    SessionId,
    WorkspacePath,
    hints,
    omittable,
)
from raykernel.server.sessions import Sessions
from raykernel.settings import Settings
from raykernel.workspace import Workspace

__all__ = [
    "App",
    "ExecutionRefused",
    "FileNotFound",
    "FileTooLarge",
    "ForSession",
    "FunctionFailed",
    "InvalidArgument",
    "InvalidSetting",
    "KernelDied",
    "MissingDependency",
    "NotFound",
    "OptionalSessionId",
    "PathOutsideWorkspace",
    "RaykernelError",
    "RunError",
    "RunReply",
    "SessionBusy",
    "SessionId",
    "SessionNotFound",
    "SessionUnavailable",
    "Sessions",
    "Settings",
    "Workspace",
    "WorkspacePath",
    "current_app",
    "hints",
    "hookimpl",
    "omittable",
]

del annotations  # the __future__ import's name, not part of the API
