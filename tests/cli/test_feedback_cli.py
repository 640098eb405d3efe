"""``soma feedback``, ``soma route train`` and ``soma route report`` against the real gateway
(served with the OpenAI-wire fake as its provider)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

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


def test_report_shows_cost_and_quality_before_and_after_the_heads(
    tmp_path: Path, fake_openai: FakeVendor, invoke: Invoke
) -> None:
    """A streamed routed completion is rated with ``soma feedback``; the report splits the
    answers at the tenant heads' promotion. The heads row is written straight into the served
    gateway's database (what a promoting ``soma route train`` leaves there: training itself
    is tested in tests/gateway/test_route_shadow.py); the report reads only its date."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from somaagent.db.base import utcnow
    from somaagent.llm.tables import TenantRouteHeads

    with serve_routed_gateway(tmp_path, fake_openai) as gateway:

        def soma(*args: str) -> tuple[int, str]:
            result = invoke("--base-url", gateway.base_url, "--api-key", gateway.admin_key, *args)
            return result.exit_code, result.output

        headers = {"Authorization": f"Bearer {gateway.admin_key}"}
        body = {"model": "auto", "messages": [{"role": "user", "content": "Say hi"}]}
        with httpx.Client(base_url=gateway.base_url, headers=headers) as http:
            streamed = http.post("/v1/chat/completions", json={**body, "stream": True})
            assert streamed.status_code == 200 and "data: [DONE]" in streamed.text
            first = json.loads(streamed.text.split("data: ", 2)[1])["id"]
            code, out = soma("feedback", first, "up")
            assert code == 0 and f"rated {first}" in out, out

            code, out = soma("route", "report")
            assert code == 0 and "before heads" in out and "no heads yet" in out, out
            assert "shadow evaluation" in out and "off" in out

            engine = create_engine(f"sqlite:///{tmp_path / 'soma.db'}")
            with Session(engine) as session:
                session.add(
                    TenantRouteHeads(
                        tenant_id="default",
                        heads={},
                        report={
                            "promoted": True,
                            "before": {"brier": 0.3},
                            "after": {"brier": 0.2},
                        },
                        outcomes=30,
                        trained_at=utcnow(),
                    )
                )
                session.commit()
            engine.dispose()
            later = http.post("/v1/chat/completions", json=body)
            assert later.status_code == 200, later.text

        code, out = soma("route", "report", "--json")
        assert code == 0, out
        periods = json.loads(out)["periods"]
        assert periods["before_heads"]["routed"] == 1 and periods["after_heads"]["routed"] == 1
        assert periods["before_heads"]["explicit"] == {"rated": 1, "mean_score": 1.0}
        assert periods["after_heads"]["rated"] == 0
        assert periods["comparison"]["cost_per_answer_change"] is not None
        code, out = soma("route", "report")
        assert code == 0 and "heads trained" in out and "cost per answer" in out, out


def test_the_shadow_line_gives_todays_counts() -> None:
    from somaagent.cli.feedback import _shadow
    from somaagent.sdk._feedback import RouteReport

    status = {
        "rate": 0.1,
        "judge": "gpt-4o",
        "judge_in_registry": True,
        "budget_usd": 5.0,
        "spent_today_usd": 0.25,
        "sampled": 9,
        "judged": 5,
        "unparseable": 1,
        "failed": 1,
        "over_budget": 0,
        "in_flight": 2,
    }
    report = RouteReport(routed=90, rated=5, judge_cost_usd=1.5, shadow=status)
    assert _shadow(report) == (
        "10% of cheaper answers judged by gpt-4o; $0.250000 of $5.00 today (5 judged, "
        "1 unreadable, 1 failed, 0 over budget, 2 in flight), $1.500000 in all"
    )
    assert _shadow(RouteReport(routed=1, rated=0, judge_cost_usd=0.5)).startswith("off")
