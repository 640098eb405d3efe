"""/metrics: HTTP duration by route template and status; GenAI usage and duration."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from somaagent.gateway.metrics import MODEL_ERROR_TYPES, SERVER_ERROR_STATUSES
from tests.gateway.conftest import FAKE_MODEL, Gateway

pytestmark = pytest.mark.anyio


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def test_metrics_by_route_template_and_genai(gateway: Gateway) -> None:
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    await gateway.client.post(f"/v1/conversations/{conv['id']}/messages", json={"content": "a b c"})
    await gateway.client.get("/v1/conversations/conv_missing")
    text = (await gateway.client.get("/metrics")).text
    http = "http_server_request_duration_seconds_count"
    assert (
        sample(
            text,
            http,
            http_request_method="POST",
            http_response_status_code="201",
            http_route="/v1/conversations/{conversation_id}/messages",
        )
        == 1.0
    )
    assert (
        sample(
            text,
            http,
            http_request_method="GET",
            http_response_status_code="404",
            http_route="/v1/conversations/{conversation_id}",
        )
        == 1.0
    )
    genai = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": FAKE_MODEL,
    }
    assert (
        sample(text, "gen_ai_client_token_usage_count", gen_ai_token_type="input", **genai) == 1.0
    )
    assert (
        sample(text, "gen_ai_client_token_usage_count", gen_ai_token_type="output", **genai) == 1.0
    )
    output_sum = sample(text, "gen_ai_client_token_usage_sum", gen_ai_token_type="output", **genai)
    assert output_sum is not None and output_sum >= 4  # "Echo: a b c" is at least 4 tokens
    assert (
        sample(text, "gen_ai_client_operation_duration_seconds_count", error_type="", **genai)
        == 1.0
    )


async def test_failed_model_call_counts_error_type(gateway: Gateway) -> None:
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    await gateway.client.post(
        f"/v1/conversations/{conv['id']}/messages", json={"content": "x [[status:500]]"}
    )
    text = (await gateway.client.get("/metrics")).text
    counts = {
        s.labels["error_type"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "gen_ai_client_operation_duration_seconds_count"
        and s.labels["gen_ai_request_model"] == FAKE_MODEL
    }
    failed = {kind: value for kind, value in counts.items() if value}
    assert len(failed) == 1  # the call and its one retry (a 500 is retryable), one error type
    ((kind, value),) = failed.items()
    assert kind.startswith("Provider") and value == 2.0
    assert counts[""] == 0.0


async def test_the_series_an_slo_counts_as_bad_exist_from_the_first_call(gateway: Gateway) -> None:
    """A series born at its first failure hides that failure from rate(): they start at 0."""
    conv = (await gateway.client.post("/v1/conversations", json={})).json()
    await gateway.client.post(f"/v1/conversations/{conv['id']}/messages", json={"content": "hi"})
    text = (await gateway.client.get("/metrics")).text
    genai = {"gen_ai_request_model": FAKE_MODEL, "gen_ai_provider_name": "openai"}
    for kind in MODEL_ERROR_TYPES:
        name = "gen_ai_client_operation_duration_seconds_count"
        assert sample(text, name, error_type=kind, **genai) == 0.0, kind
    route = {"http_route": "/v1/conversations", "http_request_method": "POST"}
    for status in SERVER_ERROR_STATUSES:
        name = "http_server_request_duration_seconds_count"
        assert sample(text, name, http_response_status_code=str(status), **route) == 0.0
    assert sample(text, name, http_response_status_code="201", **route) == 1.0


async def test_health_and_readiness(gateway: Gateway) -> None:
    assert (await gateway.client.get("/healthz")).json() == {"status": "ok"}
    ready = await gateway.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"
