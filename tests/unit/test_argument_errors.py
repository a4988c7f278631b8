"""Validation failures in plain words, typed (argument_errors is pure: no server)."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from raykernel.errors import InvalidArgument, InvalidSessionId
from raykernel.server.arguments import OptionalSessionId, SessionId, clean_text
from raykernel.server.typed_errors import normalise_uri, typed_from_validation


def _error(annotation: object, value: object) -> Exception:
    adapter = TypeAdapter(annotation)
    with pytest.raises(ValidationError) as info:
        adapter.validate_python(value)
    return typed_from_validation(info.value)


def _arguments_error(**values: object) -> Exception:
    from pydantic import validate_call

    @validate_call
    def tool(
        code: Annotated[str, Field(min_length=1)],
        timeout: Annotated[float | None, Field(gt=0)] = None,
        packages: list[Annotated[str, Field(max_length=3)]] | None = None,
        session_id: OptionalSessionId = None,
    ) -> None:
        pass

    with pytest.raises(ValidationError) as info:
        tool(**values)
    return typed_from_validation(info.value)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"code": ""}, "InvalidArgument: code: must not be empty"),
        ({"code": 1}, "InvalidArgument: code: must be a string"),
        ({"code": "x", "timeout": -5}, "InvalidArgument: timeout: must be greater than 0"),
        ({}, "InvalidArgument: code: is required"),
        ({"code": "x", "packages": ["abcd"]}, "InvalidArgument: packages[0]: must have at most 3"),
        ({"code": "x", "session_id": "../x"}, "InvalidSessionId: session_id: invalid session id"),
        ({"code": "x", "session_id": ""}, "InvalidSessionId: session_id: invalid session id"),
        ({"code": "x", "session_id": "."}, "InvalidSessionId: session_id: invalid session id"),
    ],
)
def test_validation_failures_become_typed_plain_words(values: dict, expected: str) -> None:
    text = str(_arguments_error(**values))
    assert text.startswith(expected), text
    for internal in ("pydantic", "validation error", "http", "type=", "input_value", "call["):
        assert internal not in text


def test_every_session_id_refusal_has_one_kind() -> None:
    for bad in ("", "../x", ".", "a" * 65, "has space"):
        assert isinstance(_error(SessionId, bad), InvalidSessionId), bad
    assert str(_error(SessionId, 123)) == "InvalidArgument: arguments: must be a string"


def test_several_bad_arguments_are_all_named() -> None:
    text = str(_arguments_error(code="", timeout=0))
    assert "code: must not be empty" in text and "timeout: must be greater than 0" in text
    assert isinstance(_arguments_error(code=""), InvalidArgument)


@pytest.mark.parametrize(
    ("uri", "normal"),
    [
        ("raykernel://sessions/../x", "raykernel://sessions/x"),
        ("raykernel://outputs/a/./b/../c.png", "raykernel://outputs/a/c.png"),
        ("raykernel://outputs/%2e%2e/%2E%2E/etc", "raykernel://outputs/etc"),
        ("raykernel://outputs/a%2Fb", "raykernel://outputs/a%2Fb"),
        ("raykernel://outputs", "raykernel://outputs"),
        ("raykernel://outputs/dir/", "raykernel://outputs/dir/"),
    ],
)
def test_resource_uris_are_normalised(uri: str, normal: str) -> None:
    assert normalise_uri(uri) == normal


def test_descriptions_lose_control_characters_but_keep_lines() -> None:
    assert clean_text("a\x1b[31mred\x00\nnext\tcol\x7f") == "a[31mred\nnext\tcol"
