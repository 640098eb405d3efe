"""How the CLI words an API error, and its exit code: the key hint only where the key is at
fault."""

from __future__ import annotations

from somaagent.cli._render import EXIT_AUTH, EXIT_ERROR, describe, exit_code_for
from somaagent.errors import AuthenticationError, PermissionDeniedError

HINT = "(check the key, or run `soma login`)"


def test_a_refused_key_gets_the_hint_and_exit_4() -> None:
    for exc in (
        AuthenticationError("invalid API key"),
        PermissionDeniedError("this key's scope does not allow it"),
    ):
        assert describe(exc).endswith(HINT)
        assert exit_code_for(exc) == EXIT_AUTH


def test_a_403_of_its_own_kind_is_not_about_the_key() -> None:
    exc = PermissionDeniedError(
        "the landlock tier cannot enforce network hosts ['example.com']; run with bubblewrap",
        problem_type="urn:somaagent:problem:capsule-permissions-unenforceable",
        request_id="req_1",
    )
    assert describe(exc) == (
        "the landlock tier cannot enforce network hosts ['example.com']; run with bubblewrap "
        "(HTTP 403, request req_1)"
    )
    assert exit_code_for(exc) == EXIT_ERROR
