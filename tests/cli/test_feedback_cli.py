"""``soma feedback``, ``soma route train`` and ``soma route report`` against the real gateway
(served with the OpenAI-wire fake as its provider)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.cli.conftest import Invoke
from tests.fakes.fixtures import FakeVendor
from tests.sdk.test_route_sdk import RoutedGateway, serve_routed_gateway

pytest.importorskip("fastapi", reason="the real gateway needs the server extra")


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeVendor
) -> Iterator[RoutedGateway]:
    with serve_routed_gateway(tmp_path_factory.mktemp("feedback-cli"), fake_openai) as running:
        yield running


def test_rate_train_and_report(gateway: RoutedGateway, invoke: Invoke) -> None:
    def soma(*args: str) -> tuple[int, str]:
        result = invoke("--base-url", gateway.base_url, "--api-key", gateway.admin_key, *args)
        return result.exit_code, result.output

    headers = {"Authorization": f"Bearer {gateway.admin_key}"}
    with httpx.Client(base_url=gateway.base_url, headers=headers) as http:
        conv = http.post("/v1/conversations", json={}).json()["id"]
        sent = http.post(
            f"/v1/conversations/{conv}/messages", json={"content": "Hi there", "model": "auto"}
        )
        assert sent.status_code == 201, sent.text
        reply = sent.json()["reply"]["id"]

    code, out = soma("feedback", reply, "up")
    assert code == 0 and f"rated {reply}" in out
    code, out = soma("feedback", "msg_unknown", "down")
    assert code != 0 and "no routed answer" in out
    code, out = soma("route", "train")
    assert code != 0 and "at least 30" in out
    code, out = soma("route", "report", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["routed"] >= 1 and report["rated"] == 1 and report["win_rate"] == 1.0
    code, out = soma("route", "report")
    assert code == 0 and "savings realised" in out and "none yet" in out
    code, out = soma("route", "What is 2 + 2?", "--json")  # the explanation is still the default
    assert code == 0 and json.loads(out)["evidence"]
