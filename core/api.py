"""The plugin API: everything a plugin may import from raykernel, in one place.

What is named here is documented in docs/plugins.md and kept stable across releases; every
other module of raykernel is internal and may change (a plugin that imports one will break).

    from raykernel.api import App, OptionalSessionId, WorkspacePath, hints, hookimpl
"""

from __future__ import annotations

from raykernel import __version__
from raykernel.errors import (
    ExecutionRefused,
    FileNotFound,
    FileTooLarge,
    FunctionFailed,
    InvalidArgument,
    InvalidSetting,
    KernelDied,
    MissingDependency,
    NotAllowed,
    NotFound,
    PathOutsideWorkspace,
    RaykernelError,
    ResourceNotFound,
    SessionBusy,
    SessionNotFound,
    SessionUnavailable,
    SourceBuildRefused,
)
from raykernel.hookspecs import hookimpl
from raykernel.replies import (
    RunError,
    RunReply,
    cell_outputs,
    notebook,
    resource_uri,
    run_result,
    tool_result,
)
from raykernel.server.app import App, current_app
from raykernel.server.arguments import (
    CleanText,
    ForSession,
    NewSessionId,
    OptionalSessionId,
    SessionId,
    SnapshotName,
    WorkspacePath,
    hints,
    omittable,
)
from raykernel.server.services import Sessions
from raykernel.settings import Settings
from raykernel.workspace import Workspace

__all__ = [
    "App",
    "CleanText",
    "ExecutionRefused",
    "FileNotFound",
    "FileTooLarge",
    "ForSession",
    "FunctionFailed",
    "InvalidArgument",
    "InvalidSetting",
    "KernelDied",
    "MissingDependency",
    "NewSessionId",
    "NotAllowed",
    "NotFound",
    "OptionalSessionId",
    "PathOutsideWorkspace",
    "RaykernelError",
    "ResourceNotFound",
    "RunError",
    "RunReply",
    "SessionBusy",
    "SessionId",
    "SessionNotFound",
    "SessionUnavailable",
    "Sessions",
    "Settings",
    "SnapshotName",
    "SourceBuildRefused",
    "Workspace",
    "WorkspacePath",
    "__version__",
    "cell_outputs",
    "current_app",
    "hints",
    "hookimpl",
    "notebook",
    "omittable",
    "resource_uri",
    "run_result",
    "tool_result",
]

del annotations  # the __future__ import's name, not part of the API
