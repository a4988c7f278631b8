"""What the stdio wire answers for each kind of bad line (check_line is pure: no server)."""

from __future__ import annotations

import json

import pytest

from raykernel.server.stdio_wire import INVALID_REQUEST, PARSE_ERROR, check_line, top_level_id


def _request(request_id: str, arguments: str = "{}") -> bytes:
    return (
        f'{{"jsonrpc": "2.0", "id": {request_id}, "method": "tools/call", '
        f'"params": {{"name": "ping", "arguments": {arguments}}}}}'
    ).encode()


def test_a_valid_request_passes() -> None:
    assert check_line(_request("1")) is None
    assert check_line(_request('"a"', '{"x": ' + "[" * 50 + "]" * 50 + "}")) is None
    assert check_line(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}') is None
    assert check_line(b'{"jsonrpc": "2.0", "id": 3, "result": {}}') is None


@pytest.mark.parametrize(
    ("line", "code", "request_id"),
    [
        (b"not json", PARSE_ERROR, None),
        (b"[" * 10_000, PARSE_ERROR, None),
        (b"\xff\xfe{}", PARSE_ERROR, None),
        (_request("7", '{"x": ' + "[" * 1000 + "]" * 1000 + "}"), PARSE_ERROR, 7),
        (_request("8", '{"x": ' + "[" * 500 + "]" * 500 + "}"), PARSE_ERROR, 8),
        (_request('"s"', '{"x": "\\ud800"}'), PARSE_ERROR, "s"),
        (b"42", INVALID_REQUEST, None),
        (b"[]", INVALID_REQUEST, None),
        (b'{"jsonrpc": "2.0", "id": {}, "method": "ping"}', INVALID_REQUEST, None),
        (b'{"jsonrpc": "2.0", "id": null, "method": "ping"}', INVALID_REQUEST, None),
        (b'{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}', INVALID_REQUEST, None),
        (b'{"jsonrpc": "2.0", "id": false, "method": "ping"}', INVALID_REQUEST, None),
        (b'{"jsonrpc": "2.0", "id": 9, "method": 7}', INVALID_REQUEST, 9),
        (b'{"id": 10, "no_method": true}', INVALID_REQUEST, 10),
    ],
)
def test_bad_lines_are_answered_with_the_right_code_and_id(
    line: bytes, code: int | None, request_id: object
) -> None:
    refusal = check_line(line)
    assert refusal is not None
    assert (refusal.code, refusal.request_id) == (code, request_id)
    if code is not None:
        json.dumps({"message": refusal.message})  # always sendable


def test_a_malformed_response_is_dropped_not_answered() -> None:
    refusal = check_line(b'{"jsonrpc": "2.0", "id": [], "result": {}}')
    assert refusal is not None and refusal.code is None


def test_top_level_id_ignores_nested_and_quoted_ids() -> None:
    text = '{"a": {"id": 3}, "s": "x\\"id\\": 4", "id": 5}'
    assert top_level_id(text) == 5
    assert top_level_id('{"params": ' + "[" * 5000 + "]" * 5000 + ', "id": "z"}') == "z"
    assert top_level_id('{"id": true}') is None
    assert top_level_id("[1, 2]") is None
