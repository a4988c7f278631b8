"""A lean local Ray for an embedded server: only the processes one node needs.

``ray.init()`` on a laptop starts eleven processes. An embedded server needs the GCS, the raylet
(with the two agents it starts itself) and Ray's API server; it has no use for the autoscaler's
monitor (one node, nothing to scale), the log monitor (worker output never reaches the driver:
``log_to_driver=False``) or workers prestarted for tasks it never submits. Those cost about
140 MiB, so the head is started here with Ray's own ``RayParams`` (what ``ray start
--no-monitor`` uses), then joined by address. Ray keeps these parameters private: on any other
Ray version this falls back to a plain ``ray.init``, and says so in the log.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)

# Ray's system config for the lean head: no idle workers started ahead of demand (session
# actors have their own warm pool), and no memory monitor: it picks its victims by the actor's
# own memory, blind to the kernels (the actors' children) that hold it, and would kill an idle
# bystander. The front end's memory guard stops the session that uses the memory instead.
LEAN_SYSTEM_CONFIG = {
    "enable_worker_prestart": False,
    "prestart_worker_first_driver": False,
    "memory_monitor_refresh_ms": 0,
}


class LocalHead:
    """A one-node Ray head owned by this process; ``shutdown`` stops exactly its processes."""

    def __init__(self, dashboard: bool) -> None:
        self.dashboard = dashboard
        self.node: Any = None

    def params(self) -> Any:
        """Ray's parameters for the head."""
        from ray._private.parameter import RayParams

        return RayParams(
            num_cpus=os.cpu_count() or 1,
            include_dashboard=self.dashboard,
            include_log_monitor=False,
            no_monitor=True,
            _system_config=dict(LEAN_SYSTEM_CONFIG),
        )

    def start(self) -> str:
        """Start the head; its address for ``ray.init``."""
        from ray._private.authentication.authentication_token_setup import (
            enable_token_auth_by_default,
            ensure_token_if_auth_enabled,
        )
        from ray._private.node import Node

        params = self.params()
        # What ray.init does before it starts a cluster: the same token rules.
        enable_token_auth_by_default()
        ensure_token_if_auth_enabled(params._system_config, create_token_if_missing=True)
        self.node = Node(
            params, head=True, shutdown_at_exit=False, spawn_reaper=True, ray_init_cluster=True
        )
        return str(self.node.address)

    def shutdown(self) -> None:
        node, self.node = self.node, None
        if node is not None:
            node.kill_all_processes(check_alive=False, allow_graceful=True)


def init_kwargs(namespace: str, dashboard: bool) -> dict[str, Any]:
    """``ray.init`` arguments every connection of this server uses."""
    return {
        "namespace": namespace,
        "include_dashboard": dashboard,
        # Worker output must never reach this process's stdout (the stdio protocol).
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
