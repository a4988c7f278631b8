"""What a kernel reports and refuses when the machine cannot confine it (the sandbox calls
themselves are replaced here: applying them would confine the test process)."""

from __future__ import annotations

import pytest

from raykernel.kernel import confinement, landlock


def _no_namespaces(network_off: bool, cover: dict) -> None:
    raise confinement.NamespacesUnavailable("unshare: Operation not permitted")


def _no_landlock(rules: landlock.Rules) -> int:
    raise landlock.LandlockUnavailable("this kernel has no Landlock")


def test_network_off_is_refused_rather_than_run_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(confinement, "enter", _no_namespaces)
    monkeypatch.setattr(landlock, "restrict_self", _no_landlock)
    spec = {"isolation": "confined", "network": "off", "write": []}
    with pytest.raises(confinement.ConfinementRefused, match="not available on this node"):
        confinement.confine(spec)
    with pytest.raises(confinement.ConfinementRefused, match="needs isolation"):
        confinement.confine({**spec, "isolation": "process"})


def test_what_could_not_be_applied_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(confinement, "enter", _no_namespaces)
    monkeypatch.setattr(landlock, "restrict_self", _no_landlock)
    report = confinement.confine({"isolation": "confined", "network": "on", "write": []})
    assert report["files"].startswith("unconfined: Landlock unavailable")
    assert report["namespaces"].startswith("unavailable")
    assert report["network"] == "on"


def test_confined_rules_name_the_workspace_and_not_the_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    seen: dict = {}
    # No PID namespace "entered" here: descending into one would fork this test process.
    monkeypatch.setattr(
        confinement, "enter", lambda off, cover: seen.update(cover=cover) or "not in a test"
    )
    monkeypatch.setattr(landlock, "restrict_self", lambda rules: seen.update(rules=rules) or 7)
    report = confinement.confine(
        {"isolation": "confined", "network": "off", "write": [str(tmp_path)], "hide": ["/tmp/ray"]}
    )
    assert report["network"].startswith("off") and report["files"].startswith("landlock")
    rules = seen["rules"]
    assert tmp_path in rules.write
    from pathlib import Path

    assert Path.home() not in rules.read and Path.home() not in rules.write
    assert Path("/tmp/ray") in seen["cover"]


def test_this_machine_has_landlock() -> None:
    """The suite's confinement tests rely on it; a machine without it must say so here."""
    assert landlock.abi_version() >= 1
