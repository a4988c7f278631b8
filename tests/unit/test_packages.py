"""Package specs from a model are parsed strictly and never reach a shell."""

from __future__ import annotations

from pathlib import Path

import pytest

from raykernel.actors.installer import Installer, parse_requirements
from raykernel.errors import InvalidPackageSpec
from tests.helpers import HOSTILE_PACKAGE_SPECS


@pytest.mark.parametrize("spec", HOSTILE_PACKAGE_SPECS)
def test_hostile_specs_are_refused(spec: str) -> None:
    with pytest.raises(InvalidPackageSpec):
        parse_requirements([spec])


def test_one_bad_spec_refuses_the_whole_list() -> None:
    with pytest.raises(InvalidPackageSpec, match="rm -rf"):
        parse_requirements(["requests", "x; rm -rf ~"])


def test_plain_requirements_parse() -> None:
    parsed = parse_requirements(["requests", "pandas>=2.2,<3", "uvicorn[standard]==0.30.1"])
    assert [r.name for r in parsed] == ["requests", "pandas", "uvicorn"]


def test_url_requirement_allowed_only_when_configured() -> None:
    parsed = parse_requirements(["pkg @ https://example.com/pkg.whl"], allow_urls=True)
    assert parsed[0].url == "https://example.com/pkg.whl"


@pytest.mark.parametrize("program", ["uv", "pip"])
def test_install_command_is_wheels_only_into_the_target(tmp_path: Path, program: str) -> None:
    installer = Installer(program, tmp_path / "cache")
    command = installer.command(parse_requirements(["requests>=2"]), tmp_path)
    assert isinstance(command, list)
    assert "--target" in command and str(tmp_path) in command
    assert str(tmp_path / "cache") in command
    assert ("--no-build" if program == "uv" else ":all:") in command
    assert command[-1] == "requests>=2"
    allowed = Installer(program, tmp_path, allow_builds=True)
    assert "--no-build" not in allowed.command(parse_requirements(["x"]), tmp_path)
    assert ":all:" not in allowed.command(parse_requirements(["x"]), tmp_path)


def test_a_refused_build_is_named_from_the_installer_output(tmp_path: Path) -> None:
    stderr = (
        "  cause: Because docopt==0.6.2 has no usable wheels and you require docopt==0.6.2, we "
        "can conclude that your requirements are unsatisfiable.\n\nhint: Wheels are required "
        "for `docopt` because building from source is disabled for all packages\n"
    )
    assert Installer("uv", tmp_path).refused_builds(stderr) == ["docopt"]
    assert Installer("uv", tmp_path, allow_builds=True).refused_builds(stderr) == []
    assert Installer("uv", tmp_path).refused_builds("error: network unreachable") == []


def test_the_installer_reads_the_local_index_its_settings_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("UV_FIND_LINKS", str(tmp_path / "links"))
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", f"https://pypi.org/simple {tmp_path.as_uri()}")
    reads = Installer("uv", tmp_path).reads()
    assert str(tmp_path / "links") in reads and str(tmp_path) in reads
    assert str(Path.home()) not in reads
