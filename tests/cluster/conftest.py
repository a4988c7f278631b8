"""A two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``), with Ray's token
authentication on explicitly, and front ends that join it with --ray-address."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    _token_auth_on(monkeypatch)
    two = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        worker = two.add_node(num_cpus=1, resources={"special": 1})
        two.wait_for_nodes()
        two.worker = worker
        yield two
    finally:
        two.shutdown()


def _token_auth_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray 2.60's default for a new cluster, made explicit so these tests do not depend on the
    order they run in; the token is Ray's usual ~/.ray/auth_token (created as ray.init would)."""
    from ray._private.authentication.authentication_token_setup import (
        ensure_token_if_auth_enabled,
    )
    from ray._raylet import Config

    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    Config.initialize("")  # this process reads the mode once; the cluster's GCS client needs it
    ensure_token_if_auth_enabled(create_token_if_missing=True)
