"""Pytest plugin: the fake vendor servers, one real uvicorn server each per test session.

Registered by ``tests/conftest.py``. ``fake_openai`` and ``fake_anthropic`` yield a
:class:`FakeVendor`: point an adapter or SDK at ``base_url`` with ``api_key``, then read
``requests`` to see what reached the vendor. The servers live for the whole session, so a test
that counts requests calls ``.clear()`` first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.fakes._server import run_asgi
from tests.fakes._vendor import RecordedRequest, RequestLog
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI

__all__ = ["FakeVendor", "RecordedRequest", "fake_anthropic", "fake_openai"]


@dataclass(frozen=True)
class FakeVendor:
    """A running fake vendor.

    Attributes:
        base_url: the API root as the vendor's SDK expects it (OpenAI's includes ``/v1``;
            Anthropic's does not).
        api_key: the key the fake accepts.
        requests: every request received this session, oldest first (a list; ``snapshot()``
            copies it).
    """

    base_url: str
    api_key: str
    requests: RequestLog

    def clear(self) -> None:
        """Forget the requests recorded so far."""
        self.requests.clear()


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeVendor]:
    """A fake OpenAI API on loopback (``base_url`` ends in ``/v1``)."""
    fake = FakeOpenAI()
    with run_asgi(fake.app) as url:
        yield FakeVendor(base_url=f"{url}/v1", api_key=fake.api_key, requests=fake.requests)


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeVendor]:
    """A fake Anthropic Messages API on loopback."""
    fake = FakeAnthropic()
    with run_asgi(fake.app) as url:
        yield FakeVendor(base_url=url, api_key=fake.api_key, requests=fake.requests)
