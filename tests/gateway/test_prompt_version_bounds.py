"""A label move naming a version past 32 bits is a 422 naming the field, on SQLite and
PostgreSQL (issue 14): the PostgreSQL schema fuzz found ``PUT /v1/prompts/{name}/labels/{label}``
answering 500 for ``{"version": 2147483648}`` (asyncpg refuses it for the ``INTEGER`` column),
while SQLite looked it up and answered "no such version"."""

from __future__ import annotations

import pytest

from somaagent.types.prompts import MAX_VERSION
from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.anyio

URL = "/v1/prompts/greeting/labels/production"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"version": 2**31}, "version"),
        ({"version": 10**30}, "version"),
        ({"version": 1, "expected_version": 2**31}, "expected_version"),
    ],
)
async def test_a_version_past_the_bound_is_a_422(
    gateway: Gateway, body: dict[str, int], field: str
) -> None:
    pushed = await gateway.client.post(
        "/v1/prompts", json={"name": "greeting", "role": "system", "body": "Hello!"}
    )
    assert pushed.status_code == 201, pushed.text

    answer = await gateway.client.put(URL, json=body)

    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    [error] = answer.json()["errors"]
    assert error["loc"] == ["body", field]
    assert error["type"] == "less_than_equal"  # refused at the edge, before any query
    # the bound itself is a version like any other: looked up (and not found), not refused
    largest = await gateway.client.put(URL, json={"version": MAX_VERSION})
    assert largest.status_code == 422, largest.text
    assert largest.json()["errors"][0]["msg"] == "no such version"
    labels = await gateway.client.get("/v1/prompts/greeting/labels")
    assert labels.json()["labels"] == {}
