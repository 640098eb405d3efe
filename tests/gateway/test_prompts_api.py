"""``/v1/prompts`` through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from somaagent.db.engine import _alembic_config, migrate
from tests.gateway.conftest import FAKE_MODEL, Gateway

pytestmark = pytest.mark.anyio

GREETING: dict[str, Any] = {
    "name": "greeting",
    "role": "system",
    "description": "Greets someone",
    "body": "Hello {{ who }}!{% if excited %} Welcome!{% endif %}",
    "variables": [
        {"name": "who", "type": "string", "description": "whom to greet"},
        {"name": "excited", "type": "boolean", "default": False},
    ],
    "metadata": {"owner": "team-a"},
}


@pytest.fixture
def client(gateway: Gateway) -> httpx.AsyncClient:
    """The admin client."""
    return gateway.client


async def push(client: httpx.AsyncClient, **changes: Any) -> httpx.Response:
    return await client.post("/v1/prompts", json=GREETING | changes)


async def test_push_render_label_roll_back_and_diff(client: httpx.AsyncClient) -> None:
    first = await push(client)
    assert first.status_code == 201, first.text
    assert first.json()["version"] == 1
    assert first.json()["source"] == "tenant"
    second = await push(client, body="Hi there, {{ who }}.")
    assert second.json()["version"] == 2

    rendered = await client.post("/v1/prompts/greeting/render", json={"variables": {"who": "Ada"}})
    assert rendered.status_code == 200, rendered.text
    assert rendered.json() | {"tokens": None} == {
        "name": "greeting",
        "version": 2,
        "role": "system",
        "content": "Hi there, Ada.",
        "tokens": None,
        "model": FAKE_MODEL,
        "source": "tenant",
    }
    assert rendered.json()["tokens"] > 0

    labelled = await client.put("/v1/prompts/greeting/labels/production", json={"version": 2})
    assert labelled.json() == {"name": "greeting", "labels": {"production": 2}}
    by_label = await client.post(
        "/v1/prompts/greeting:production/render",
        json={"variables": {"who": "Ada", "excited": True}},
    )
    assert by_label.json()["content"] == "Hi there, Ada."

    # Roll back: the label moves to version 1, and renders follow it at once.
    await client.put("/v1/prompts/greeting/labels/production", json={"version": 1})
    rolled = await client.post(
        "/v1/prompts/greeting:production/render",
        json={"variables": {"who": "Ada", "excited": True}},
    )
    assert rolled.json()["content"] == "Hello Ada! Welcome!"
    assert rolled.json()["version"] == 1
    pinned = await client.post("/v1/prompts/greeting@2/render", json={"variables": {"who": "B"}})
    assert pinned.json()["content"] == "Hi there, B."

    diff = (await client.get("/v1/prompts/greeting/diff", params={"from": "1", "to": "2"})).json()
    assert diff["changed"] is True
    assert diff["from_version"] == 1 and diff["to_version"] == 2
    assert "--- greeting@1" in diff["diff"] and "+++ greeting@2" in diff["diff"]
    assert "-Hello {{ who }}!" in diff["diff"] and "+Hi there, {{ who }}." in diff["diff"]
    by_labels = await client.get(
        "/v1/prompts/greeting/diff", params={"from": "production", "to": "latest"}
    )
    assert by_labels.json()["diff"] == diff["diff"]
    default_from = await client.get("/v1/prompts/greeting/diff")
    assert default_from.json()["from_version"] == 1

    versions = (await client.get("/v1/prompts/greeting/versions")).json()
    assert [(v["version"], v["labels"]) for v in versions["data"]] == [(2, []), (1, ["production"])]
    got = (await client.get("/v1/prompts/greeting")).json()
    assert got["version"] == 2
    assert got["variables"][1] == {
        "name": "excited",
        "type": "boolean",
        "required": False,
        "default": False,
        "description": "",
    }
    assert (await client.get("/v1/prompts/greeting:production")).json()["version"] == 1
    assert (await client.get("/v1/prompts/greeting", params={"version": 1})).json()["body"] == (
        GREETING["body"]
    )
    assert (await client.get("/v1/prompts/greeting", params={"label": "production"})).json()[
        "version"
    ] == 1


async def test_a_syntax_error_is_a_422_with_line_and_column_and_saves_nothing(
    client: httpx.AsyncClient,
) -> None:
    r = await push(client, body="Hello\n  {{ who }")
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    error = r.json()["errors"][0]
    assert (error["line"], error["column"]) == (2, 10)  # the lone "}"
    assert error["loc"] == ["body", "body"]
    assert "line 2, column 10" in r.json()["detail"]
    assert (await client.get("/v1/prompts/greeting")).status_code == 404

    unclosed = await push(client, body="{% for x in y %}\n{{ x }}")
    assert unclosed.status_code == 422
    assert "endfor" in unclosed.json()["detail"]
    assert (await client.get("/v1/prompts/greeting")).status_code == 404


async def test_bad_variables_are_422s_naming_each_variable(client: httpx.AsyncClient) -> None:
    await push(client)
    r = await client.post(
        "/v1/prompts/greeting/render", json={"variables": {"excited": "yes", "mood": 1}}
    )
    assert r.status_code == 422
    by_name = {e["loc"][-1]: e for e in r.json()["errors"]}
    assert by_name["who"]["type"] == "missing"
    assert by_name["excited"]["type"] == "type_error"
    assert "must be a boolean, not a string" in by_name["excited"]["msg"]
    assert by_name["mood"]["type"] == "undeclared_variable"
    assert by_name["mood"]["loc"] == ["body", "variables", "mood"]

    undeclared = await push(client, body="{{ who }} {{ config }}")
    assert undeclared.status_code == 422
    assert "'config' is not a declared variable" in undeclared.json()["detail"]


PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ lipsum.__globals__ }}",
    "{{ config }}",
    "{{ request }}",
    "{{ who|attr('__class__') }}",
    "{{ who['__class__'] }}",
    "{% include '/etc/passwd' %}",
]


async def test_server_side_template_injection_fails(client: httpx.AsyncClient) -> None:
    for payload in PAYLOADS:
        r = await push(client, body=payload)
        assert r.status_code == 422, payload
    assert (await client.get("/v1/prompts/greeting")).status_code == 404
    # Attributes chosen at render time get past the compile-time check; the sandbox stops them.
    dynamic = {**GREETING, "body": "{{ who|attr(field) }}"}
    dynamic["variables"] = [*GREETING["variables"], {"name": "field"}]
    assert (await client.post("/v1/prompts", json=dynamic)).status_code == 201
    r = await client.post(
        "/v1/prompts/greeting/render",
        json={"variables": {"who": "x", "field": "__class__"}},
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["type"] == "template_security"
    assert "str" not in r.json()["detail"].split("object")[-1]  # no leaked repr of the class


async def test_oversized_templates_and_outputs_are_refused(client: httpx.AsyncClient) -> None:
    r = await push(client, body="x" * 70_000)
    assert r.status_code == 413
    assert "limit is 65,536" in r.json()["detail"]
    big = await push(client, body="{% for i in range(10000) %}{{ who * 100 }}{% endfor %}")
    assert big.status_code == 201
    r = await client.post("/v1/prompts/greeting/render", json={"variables": {"who": "abcdefgh"}})
    assert r.status_code == 422
    assert r.json()["errors"][0]["type"] == "template_limit"


async def test_labels_must_point_somewhere(client: httpx.AsyncClient) -> None:
    missing = await client.put("/v1/prompts/greeting/labels/production", json={"version": 1})
    assert missing.status_code == 404
    await push(client)
    nowhere = await client.put("/v1/prompts/greeting/labels/production", json={"version": 7})
    assert nowhere.status_code == 422
    assert nowhere.json()["errors"][0]["loc"] == ["body", "version"]
    assert (await client.get("/v1/prompts/greeting/labels")).json()["labels"] == {}

    assert (await client.get("/v1/prompts/greeting:production")).status_code == 404
    assert (await client.get("/v1/prompts/greeting@9")).status_code == 404
    assert (await client.get("/v1/prompts/nope")).status_code == 404
    bad_ref = await client.get("/v1/prompts/greeting@@1")
    assert bad_ref.status_code == 422
    reserved = await client.put("/v1/prompts/greeting/labels/latest", json={"version": 1})
    assert reserved.status_code == 422


async def test_labels_move_with_compare_and_set(client: httpx.AsyncClient) -> None:
    await push(client)
    await push(client, body="v2 {{ who }}")
    url = "/v1/prompts/greeting/labels/production"
    assert (await client.put(url, json={"version": 1, "expected_version": 0})).status_code == 200
    again = await client.put(url, json={"version": 2, "expected_version": 0})
    assert again.status_code == 409
    stale = await client.put(url, json={"version": 2, "expected_version": 2})
    assert stale.status_code == 409
    assert "points at version 1" in stale.json()["detail"]
    moved = await client.put(url, json={"version": 2, "expected_version": 1})
    assert moved.json()["labels"] == {"production": 2}

    assert (await client.delete(url)).status_code == 204
    assert (await client.delete(url)).status_code == 404
    assert (await client.get("/v1/prompts/greeting/labels")).json()["labels"] == {}


async def test_defaults_are_listed_render_and_can_be_overridden(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/v1/prompts", params={"limit": 100})).json()
    defaults = {p["name"]: p for p in page["data"] if p["source"] == "default"}
    assert set(defaults) == {
        "default_assistant",
        "coding_assistant",
        "data_analyst",
        "rag_context",
        "few_shot_classification",
        "task_execution",
    }
    assert defaults["rag_context"]["role"] == "user"
    assert defaults["default_assistant"]["latest_version"] == 0

    r = await client.post(
        "/v1/prompts/rag_context/render",
        json={
            "variables": {
                "question": "What is SomaAgent?",
                "context": "SomaAgent is an AI gateway.",
                "sources": ["docs/intro.md"],
            }
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["source"] == "default" and r.json()["version"] == 0
    assert "[1] docs/intro.md" in r.json()["content"]

    own = await client.post(
        "/v1/prompts", json={"name": "default_assistant", "role": "system", "body": "Be brief."}
    )
    assert own.json()["version"] == 1
    mine = await client.post("/v1/prompts/default_assistant/render", json={})
    assert mine.json()["content"] == "Be brief."
    shipped = await client.post("/v1/prompts/default_assistant@0/render", json={})
    assert shipped.json()["content"].startswith("You are SomaAgent")
    listed = (await client.get("/v1/prompts", params={"limit": 100})).json()["data"]
    entry = next(p for p in listed if p["name"] == "default_assistant")
    assert entry["source"] == "tenant" and entry["overrides_default"] is True
    versions = (await client.get("/v1/prompts/default_assistant/versions")).json()["data"]
    assert [v["version"] for v in versions] == [1, 0]
    diff = await client.get("/v1/prompts/default_assistant/diff")
    assert diff.json()["from_version"] == 0 and "+Be brief." in diff.json()["diff"]


async def test_list_paginates_by_name(client: httpx.AsyncClient) -> None:
    for name in ("alpha", "omega", "beta"):
        await client.post("/v1/prompts", json={"name": name, "body": name})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/prompts", params=params)).json()
        seen += [p["name"] for p in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert seen == sorted(seen)
    assert {"alpha", "beta", "omega", "rag_context"} <= set(seen)
    assert len(seen) == len(set(seen)) == 9


async def test_tenants_never_see_each_other(gateway: Gateway, client: httpx.AsyncClient) -> None:
    await push(client)
    other = await gateway.client_for(await gateway.new_key(tenant="other"))
    assert (await other.get("/v1/prompts/greeting")).status_code == 404
    assert (await other.post("/v1/prompts/greeting/render", json={})).status_code == 404
    listed = (await other.get("/v1/prompts", params={"limit": 100})).json()["data"]
    assert "greeting" not in {p["name"] for p in listed}
    mine = await other.post("/v1/prompts", json=GREETING | {"body": "theirs {{ who }}"})
    assert mine.json()["version"] == 1


async def test_unchanged_pushes_can_be_skipped(client: httpx.AsyncClient) -> None:
    assert (await push(client)).status_code == 201
    same = await client.post("/v1/prompts", params={"skip_unchanged": True}, json=GREETING)
    assert same.status_code == 200
    assert same.json()["version"] == 1
    forced = await push(client)
    assert forced.status_code == 201 and forced.json()["version"] == 2


async def test_a_chain_renders_messages_with_shared_variables(client: httpx.AsyncClient) -> None:
    await push(client)
    r = await client.post(
        "/v1/prompts/render",
        json={
            "prompts": ["greeting", "rag_context"],
            "variables": {"who": "Ada", "question": "Why?", "context": "Because."},
            "model": FAKE_MODEL,
        },
    )
    assert r.status_code == 200, r.text
    chain = r.json()
    assert [m["role"] for m in chain["messages"]] == ["system", "user"]
    assert chain["messages"][0]["content"] == "Hello Ada!"
    assert "Question: Why?" in chain["messages"][1]["content"]
    counts = [m["tokens"] for m in chain["messages"]]
    assert all(c > 0 for c in counts)
    assert chain["total_tokens"] > sum(counts)  # plus the chat format's overhead

    bad = await client.post(
        "/v1/prompts/render",
        json={"prompts": ["greeting", "rag_context"], "variables": {"who": "A", "x": 1}},
    )
    assert bad.status_code == 422
    names = {e["loc"][-1] for e in bad.json()["errors"]}
    assert names == {"x", "question", "context"}
    unknown_model = await client.post(
        "/v1/prompts/render", json={"prompts": ["greeting"], "model": "no-such-model"}
    )
    assert unknown_model.status_code == 422


async def test_the_prompt_routes_are_in_the_openapi_document(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"/v1/prompts", "/v1/prompts/{ref}/render", "/v1/prompts/{name}/diff"} <= set(paths)


async def test_migration_0002_downgrades_and_upgrades_again(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    def tables(connection: Connection) -> set[str]:
        return set(inspect(connection).get_table_names())

    def downgrade(connection: Connection) -> None:
        command.downgrade(_alembic_config(connection), "0001")

    await push(client)
    async with gateway.state.engine.begin() as connection:
        assert {"prompt_versions", "prompt_labels"} <= await connection.run_sync(tables)
        await connection.run_sync(downgrade)
        assert not {"prompt_versions", "prompt_labels"} & await connection.run_sync(tables)
    await migrate(gateway.state.engine)
    assert (await push(client)).json()["version"] == 1
