"""The official ``openai`` package against a real gateway on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from somaagent.gateway.app import create_app
from tests.fakes._server import run_asgi
from tests.gateway.conftest import FAKE_MODEL, make_settings


@pytest.fixture
def served(tmp_path: Path, fake_openai: Any) -> Iterator[tuple[str, str]]:
    keys: list[str] = []
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'g.db'}", fake_openai)
    app = create_app(settings, on_admin_key=keys.append)
    with run_asgi(app) as url:
        yield url, keys[0]


@pytest.fixture
def client(served: tuple[str, str]) -> Iterator[openai.OpenAI]:
    url, key = served
    with openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) as c:
        yield c


def test_chat_completion(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=FAKE_MODEL,
        messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "hi there"}],
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Echo: hi there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert raw.headers["x-soma-model"] == FAKE_MODEL
    assert float(raw.headers["x-soma-cost-usd"]) > 0


def test_streaming_chunks_end_with_done_and_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": "count the words"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: count the words"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]


def test_cut_upstream_stream_raises_in_the_client(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=FAKE_MODEL, messages=[{"role": "user", "content": "x [[cut]]"}], stream=True
    )
    with pytest.raises(openai.APIError):
        list(stream)


def test_models_list_has_prices(client: openai.OpenAI) -> None:
    models = client.models.list().data
    ids = {m.id for m in models}
    assert FAKE_MODEL in ids
    spec = next(m for m in models if m.id == FAKE_MODEL)
    extra: dict[str, Any] = spec.model_extra or {}
    assert extra["input_cost_per_mtok"] > 0
    assert extra["available"] is True


def test_errors_surface_as_openai_exceptions(
    client: openai.OpenAI, served: tuple[str, str]
) -> None:
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(
            model=FAKE_MODEL, messages=[{"role": "user", "content": "x"}], n=2
        )
    assert "body.n" in str(caught.value)
    assert caught.value.body["errors"][0]["loc"] == ["body", "n"]  # type: ignore[index]
    url, _ = served
    with (
        openai.OpenAI(
            base_url=f"{url}/v1", api_key="soma_sk_wrong" + "x" * 30, max_retries=0
        ) as bad,
        pytest.raises(openai.AuthenticationError),
    ):
        bad.models.list()


def test_model_auto_routes_and_explains(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "hello router"}],
        extra_body={"policy": {"providers": ["openai"]}},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Echo: hello router"
    assert raw.headers["x-soma-model"] == completion.model
    assert raw.headers["x-soma-route-reason"]
    extra: dict[str, Any] = completion.model_extra or {}
    assert extra["soma_route"]["model"] == completion.model
    stream = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "stream it"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Echo: stream it"


def test_usage_is_charged_to_the_key(client: openai.OpenAI, served: tuple[str, str]) -> None:
    import httpx

    url, key = served
    client.chat.completions.create(model=FAKE_MODEL, messages=[{"role": "user", "content": "x"}])
    deadline = 50
    spent = 0.0
    while deadline and spent == 0.0:  # the ledger writes within a second; poll, don't sleep blind
        me = httpx.get(f"{url}/v1/me", headers={"Authorization": f"Bearer {key}"}).json()
        spent = me["spent_this_month_usd"]
        deadline -= 1
    assert spent > 0
