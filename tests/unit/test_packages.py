"""Package specs from a model are parsed strictly and never reach a shell."""

from __future__ import annotations

from pathlib import Path

import pytest

from raykernel.errors import InvalidPackageSpec
from raykernel.kernel.packages import install_command, parse_requirements
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


def test_install_command_is_an_argument_list_into_the_target(tmp_path: Path) -> None:
    command = install_command(parse_requirements(["requests>=2"]), tmp_path)
    assert isinstance(command, list)
    assert "--target" in command and str(tmp_path) in command
    assert command[-1] == "requests>=2"
