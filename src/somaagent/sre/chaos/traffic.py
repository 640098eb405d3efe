"""Probe traffic for a local experiment: light, steady requests at the service it watches.

An experiment's hypothesis is judged on the SLOs' SLIs, which are ratios of requests: with no
requests there is nothing to judge ("no data", an ``inconclusive`` run). On one machine nobody
else may be calling the gateway, so ``soma chaos run --local`` sends its own requests, at a
rate far below a key's rate limit, to what the experiment's service serves:

* ``memory``: a search on a collection (``--collection``, else a one-document scratch
  collection made for the run and deleted after it), so every request passes the vector store;
* ``slm``: a chat completion of a few tokens (the SLM SLOs count model calls);
* anything else: ``GET /v1/models`` (the gateway API's SLOs).

It uses plain HTTP (``httpx``) with the operator's key, from one thread; answers are counted,
never judged here (the probes do that through Prometheus).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from somaagent.errors import ConfigurationError
from somaagent.sre.chaos.hypothesis import Querier, check_phase
from somaagent.sre.chaos.spec import Experiment

__all__ = ["ProbeRequest", "ProbeTraffic", "probe_requests", "scratch_name", "wait_for_data"]

SCRATCH_TEXT = (
    "Refunds take five working days. An API key is rotated by creating a new one and "
    "revoking the old one."
)


@dataclass(frozen=True)
class ProbeRequest:
    """One request the traffic repeats."""

    method: str
    path: str
    body: dict[str, Any] | None = None


def probe_requests(
    experiment: Experiment, *, collection: str | None, model: str | None = None
) -> list[ProbeRequest]:
    """The requests that exercise ``experiment``'s service (a search needs ``collection``)."""
    if experiment.service == "memory":
        if collection is None:
            raise ConfigurationError("a memory experiment's probe traffic needs a collection")
        body = {"query": "how long do refunds take", "k": 3}
        return [ProbeRequest("POST", f"/v1/memory/collections/{collection}/search", body)]
    if experiment.service == "slm":
        chat = {
            "model": model or "auto",
            "messages": [{"role": "user", "content": "Say OK."}],
            "max_tokens": 4,
        }
        return [ProbeRequest("POST", "/v1/chat/completions", chat)]
    return [ProbeRequest("GET", "/v1/models")]


@dataclass
class ProbeTraffic:
    """Sends ``requests`` in turn, ``rate`` a second at most, until stopped.

    Use it as a context manager. ``scratch`` names a collection to create (with one short
    document) before the first request and delete after the last.
    """

    base_url: str
    api_key: str
    requests: list[ProbeRequest]
    rate: float = 2.0
    scratch: str | None = None
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._client = httpx.Client(
            base_url=self.base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=30,
        )
        self._thread = threading.Thread(target=self._run, name="soma-chaos-traffic", daemon=True)

    @property
    def sent(self) -> int:
        """Requests answered so far (any status) plus those that got no answer."""
        return sum(self.statuses.values()) + self.errors

    def describe(self) -> str:
        """What is sent, for people."""
        paths = ", ".join(f"{r.method} {r.path}" for r in self.requests)
        return f"{paths}, {self.rate:g}/s"

    def _create_scratch(self) -> None:
        assert self.scratch is not None
        created = self._client.post("/v1/memory/collections", json={"name": self.scratch})
        if created.status_code not in (201, 409):
            raise ConfigurationError(
                f"could not create the probe collection {self.scratch!r}: "
                f"{created.status_code} {created.text[:200]}"
            )
        docs = {"documents": [{"text": SCRATCH_TEXT, "source": "soma-chaos-probe.md"}]}
        indexed = self._client.post(f"/v1/memory/collections/{self.scratch}/documents", json=docs)
        if indexed.status_code not in (200, 201):
            raise ConfigurationError(
                f"could not index the probe collection {self.scratch!r}: "
                f"{indexed.status_code} {indexed.text[:200]}"
            )

    def _run(self) -> None:
        pause = 1.0 / self.rate
        turn = 0
        while not self._stop.is_set():
            request = self.requests[turn % len(self.requests)]
            turn += 1
            try:
                response = self._client.request(request.method, request.path, json=request.body)
                self.statuses[response.status_code] += 1
            except httpx.HTTPError:
                self.errors += 1
            self._stop.wait(pause)

    def __enter__(self) -> ProbeTraffic:
        try:
            if self.scratch is not None:
                self._create_scratch()
        except httpx.HTTPError as exc:
            self._client.close()
            raise ConfigurationError(
                f"the gateway at {self.base_url} did not answer: {exc}"
            ) from exc
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=35)
        try:
            if self.scratch is not None:
                self._client.delete(f"/v1/memory/collections/{self.scratch}")
        except httpx.HTTPError:
            pass  # the collection stays; its name says what it was
        finally:
            self._client.close()


def scratch_name() -> str:
    """A collection name for one run's probe traffic."""
    return f"soma-chaos-probe-{os.getpid()}"


def wait_for_data(
    experiment: Experiment,
    querier: Querier,
    *,
    timeout: float,
    every: float = 2.5,
) -> bool:
    """Wait until every probe of ``experiment`` has data and the steady state holds.

    The first requests of a run (creating and indexing its scratch collection, a cold cache)
    can be slower than the rest; they leave the probes' window after a while, so a run that
    starts at once could abort on its own warm-up.

    Returns:
        True when the probes have data and hold; False at ``timeout`` (the run's own check
        then decides), or at once when Prometheus cannot be asked (waiting would not help).
    """
    deadline = time.monotonic() + timeout
    while True:
        check = check_phase(experiment.hypothesis, "before", querier)
        if any(result.status == "error" for result in check.results):
            return False
        if all(result.status != "no_data" for result in check.results) and check.held:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(every, max(0.0, deadline - time.monotonic())))
