"""What a failed ray.init tells the client."""

from __future__ import annotations


def test_a_failed_join_names_the_token_fix_only_when_auth_is_in_the_chain() -> None:
    from raykernel.sessions.cluster import AUTH_HINT, explain_failure

    try:
        try:
            raise RuntimeError("Failed to connect to GCS.\nInvalidAuthToken: token is incorrect")
        except RuntimeError as inner:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from inner
    except ConnectionError as exc:
        message = explain_failure(exc, "10.0.0.1:6379")
    assert message.startswith("Ray could not be reached at 10.0.0.1:6379: Failed to connect")
    assert message.endswith(AUTH_HINT)
    assert AUTH_HINT not in explain_failure(OSError("no space left"), None)
