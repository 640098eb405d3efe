"""The real gateway for CLI tests: SQLite, the fake OpenAI upstream, served on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import Result

from tests.cli.conftest import Invoke
from tests.fakes._server import run_asgi
from tests.fakes.fixtures import FakeVendor

MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Gateway:
    """A running gateway: its URL and the admin key it made at start-up."""

    base_url: str
    admin_key: str

    def soma(self, invoke: Invoke) -> Callable[..., Result]:
        """``soma --base-url URL --api-key KEY ...`` against this gateway."""

        def run(*args: str, input: str | None = None) -> Result:
            return invoke(
                "--base-url", self.base_url, "--api-key", self.admin_key, *args, input=input
            )

        return run


@contextmanager
def serve_gateway(data: Path, fake_openai: FakeVendor, **settings: Any) -> Iterator[Gateway]:
    """Serve the gateway that ships, with ``settings`` over the test defaults."""
    from somaagent.gateway.app import create_app
    from somaagent.gateway.settings import Settings

    defaults: dict[str, Any] = {
        "data_dir": data,
        "database_url": f"sqlite+aiosqlite:///{data / 'soma.db'}",
        "openai_base_url": fake_openai.base_url,
        "openai_api_key": fake_openai.api_key,
        "default_model": MODEL,
        "rate_limit_per_minute": 0,
        "provider_timeout_s": 5.0,
    }
    admin: list[str] = []
    app = create_app(Settings(**{**defaults, **settings}), on_admin_key=admin.append)
    with run_asgi(app, lifespan="on") as url:
        yield Gateway(base_url=url, admin_key=admin[0])
