"""The lean local head's parameters (starting it is tested over stdio, tests/transports)."""

from __future__ import annotations

from raykernel.sessions.cluster import LocalHead, init_kwargs


def test_the_lean_head_leaves_out_what_one_node_does_not_need() -> None:
    params = LocalHead(dashboard=False).params()
    assert params.no_monitor is True
    assert params.include_log_monitor is False
    assert params.include_dashboard is False
    assert params._system_config["enable_worker_prestart"] is False


def test_the_dashboard_is_opt_in() -> None:
    assert LocalHead(dashboard=True).params().include_dashboard is True
    assert init_kwargs("ns", dashboard=True)["include_dashboard"] is True
    kwargs = init_kwargs("ns", dashboard=False)
    assert kwargs["log_to_driver"] is False  # worker output never reaches stdout
    assert kwargs["namespace"] == "ns"
