"""Load-test specs: five load profiles (k6's test types) and five presets against the gateway.

A :class:`LoadTest` is a profile (how many virtual users, for how long), the requests they
send (weighted), and thresholds on p95 and p99 latency, the failure rate and the checks. Specs
are pydantic models with ``extra="forbid"``; :meth:`LoadTest.scaled` shrinks every duration for
a local run.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from somaagent.errors import ConfigurationError
from somaagent.sre.chaos.duration import Duration

__all__ = [
    "PRESETS",
    "PROFILES",
    "Endpoint",
    "LoadProfile",
    "LoadTest",
    "Stage",
    "Thresholds",
    "get_loadtest",
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stage(_Spec):
    """Ramp to ``target`` virtual users over ``duration``."""

    duration: Duration
    target: int = Field(ge=0)


class LoadProfile(_Spec):
    """How many virtual users, for how long: a constant load, or ramping stages."""

    name: str
    description: str = ""
    vus: int | None = Field(default=None, ge=1)
    duration: Duration | None = None
    stages: list[Stage] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shape(self) -> LoadProfile:
        if self.stages and (self.vus is not None or self.duration is not None):
            raise ValueError("give either stages, or vus and duration, not both")
        if not self.stages and (self.vus is None or self.duration is None):
            raise ValueError("give stages, or both vus and duration")
        if self.duration is not None and self.duration <= timedelta(0):
            raise ValueError("duration must be greater than 0")
        return self

    @property
    def total(self) -> timedelta:
        """How long the profile runs."""
        if self.duration is not None:
            return self.duration
        return sum((stage.duration for stage in self.stages), timedelta(0))

    @property
    def peak_vus(self) -> int:
        """The most virtual users at once."""
        return self.vus or max(stage.target for stage in self.stages)

    def scaled(self, factor: float, *, max_vus: int | None = None) -> LoadProfile:
        """Every duration times ``factor`` (at least 1 s each); VUs capped at ``max_vus``."""

        def shrink(value: timedelta) -> timedelta:
            return timedelta(seconds=max(1, math.ceil(value.total_seconds() * factor)))

        def cap(vus: int) -> int:
            return min(vus, max_vus) if max_vus else vus

        if self.duration is not None and self.vus is not None:
            return self.model_copy(update={"duration": shrink(self.duration), "vus": cap(self.vus)})
        stages = [Stage(duration=shrink(s.duration), target=cap(s.target)) for s in self.stages]
        return self.model_copy(update={"stages": stages})


class Endpoint(_Spec):
    """One kind of request the virtual users send.

    Attributes:
        name: the ``name`` tag of its requests (its own line in the report).
        method: the HTTP method.
        path: the path; ``${VAR}`` is replaced by the environment variable ``VAR`` at run time.
        body: a JSON body.
        weight: its share of iterations, relative to the other endpoints.
        expect: the statuses a check accepts.
        p95_ms: an optional p95 threshold of its own.
        model_call: whether it waits for a model's answer; such requests are held to the
            thresholds' ``model_*`` bounds, the others to the API bounds.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    method: Literal["GET", "POST", "PUT", "DELETE"] = "GET"
    path: str = Field(pattern=r"^/")
    body: dict[str, Any] | None = None
    weight: float = Field(default=1, gt=0)
    expect: list[int] = Field(default_factory=lambda: [200], min_length=1)
    p95_ms: float | None = Field(default=None, gt=0)
    model_call: bool = False


class Thresholds(_Spec):
    """Pass/fail criteria of a run (k6 thresholds).

    ``p95_ms``/``p99_ms`` bound the API requests; ``model_p95_ms``/``model_p99_ms`` the
    requests that wait for a model's answer, whose time is the model's (seconds on a small
    CPU model), as the SLOs split them too.
    """

    p95_ms: float = Field(gt=0)
    p99_ms: float = Field(gt=0)
    model_p95_ms: float = Field(default=2000, gt=0)
    model_p99_ms: float = Field(default=5000, gt=0)
    max_failure_rate: float = Field(default=0.01, ge=0, le=1)
    min_checks_rate: float = Field(default=0.99, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.p99_ms < self.p95_ms:
            raise ValueError("p99_ms must not be below p95_ms")
        if self.model_p99_ms < self.model_p95_ms:
            raise ValueError("model_p99_ms must not be below model_p95_ms")
        return self


class LoadTest(_Spec):
    """A load-test preset: a profile, the requests, the thresholds."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    profile: LoadProfile
    endpoints: list[Endpoint] = Field(min_length=1)
    thresholds: Thresholds
    think_time: Duration = timedelta(seconds=1)
    variables: dict[str, str] = Field(
        default_factory=dict,
        description="script variables the requests need, with what each one is",
    )

    @field_validator("endpoints")
    @classmethod
    def _unique(cls, endpoints: list[Endpoint]) -> list[Endpoint]:
        names = [endpoint.name for endpoint in endpoints]
        if len(set(names)) != len(names):
            raise ValueError("endpoint names must be unique")
        return endpoints

    def scaled(self, factor: float, *, max_vus: int | None = None) -> LoadTest:
        """This test with its profile's durations times ``factor``."""
        if not 0 < factor <= 10:
            raise ConfigurationError("--scale must be greater than 0 and at most 10")
        return self.model_copy(update={"profile": self.profile.scaled(factor, max_vus=max_vus)})

    def check_variables(self, env: dict[str, str]) -> None:
        """Raise if a variable the requests need is not in ``env``.

        Raises:
            ConfigurationError: one or more are missing (the message names each).
        """
        missing = [f"{name} ({what})" for name, what in self.variables.items() if not env.get(name)]
        if missing:
            raise ConfigurationError(
                f"{self.name} needs {', '.join(missing)}: pass --env NAME=VALUE"
                + (" (or --collection NAME)" if "SOMA_COLLECTION" in self.variables else "")
            )


def _m(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


PROFILES: dict[str, LoadProfile] = {
    # A smoke test is minimal load: is everything answering? Two users, which one embedded
    # model (one answer at a time) serves without a queue.
    "smoke": LoadProfile(name="smoke", description="2 VUs for 5 minutes", vus=2, duration=_m(5)),
    "load": LoadProfile(
        name="load",
        description="ramp to 100 VUs, hold, ramp down: 30 minutes",
        stages=[
            Stage(duration=_m(5), target=100),
            Stage(duration=_m(20), target=100),
            Stage(duration=_m(5), target=0),
        ],
    ),
    "stress": LoadProfile(
        name="stress",
        description="climb to 500 VUs and hold: 20 minutes",
        stages=[
            Stage(duration=_m(2), target=100),
            Stage(duration=_m(5), target=300),
            Stage(duration=_m(5), target=500),
            Stage(duration=_m(5), target=500),
            Stage(duration=_m(3), target=0),
        ],
    ),
    "spike": LoadProfile(
        name="spike",
        description="50 VUs, a sudden spike to 250, back to 50",
        stages=[
            Stage(duration=_m(1), target=50),
            Stage(duration=_m(2), target=50),
            Stage(duration=timedelta(seconds=10), target=250),
            Stage(duration=_m(3), target=250),
            Stage(duration=timedelta(seconds=10), target=50),
            Stage(duration=_m(2), target=50),
            Stage(duration=timedelta(seconds=30), target=0),
        ],
    ),
    "soak": LoadProfile(
        name="soak",
        description="100 VUs for 3 hours",
        stages=[
            Stage(duration=_m(5), target=100),
            Stage(duration=_m(170), target=100),
            Stage(duration=_m(5), target=0),
        ],
    ),
}
"""The five profiles, after k6's test types."""

_CHAT = {
    "model": "${SOMA_MODEL}",
    "messages": [{"role": "user", "content": "Reply with one short sentence: what is SLO?"}],
    "max_tokens": 16,
}
_HEALTH = Endpoint(name="healthz", path="/healthz", weight=1, p95_ms=100)
_MODELS = Endpoint(name="models", path="/v1/models", weight=3, p95_ms=200)
_CHAT_ENDPOINT = Endpoint(
    name="chat_completions",
    method="POST",
    path="/v1/chat/completions",
    body=_CHAT,
    weight=6,
    model_call=True,
)


def _routing(name: str, prompt: str, weight: float) -> Endpoint:
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}], "max_tokens": 64}
    return Endpoint(
        name=name,
        method="POST",
        path="/v1/chat/completions",
        body=body,
        weight=weight,
        model_call=True,
    )


PRESETS: dict[str, LoadTest] = {
    test.name: test
    for test in [
        LoadTest(
            name="gateway_smoke",
            description="A few users on every kind of gateway request: is it all working?",
            profile=PROFILES["smoke"],
            endpoints=[_HEALTH, _MODELS, _CHAT_ENDPOINT],
            # "Do answers come back?": model calls get seconds (a small CPU model on a busy
            # machine takes them); how fast they should be is the SLM latency SLO's call.
            thresholds=Thresholds(p95_ms=500, p99_ms=1000, model_p95_ms=5000, model_p99_ms=10000),
        ),
        LoadTest(
            name="gateway_load",
            description="Expected peak traffic on the gateway API.",
            profile=PROFILES["load"],
            endpoints=[_HEALTH, _MODELS, _CHAT_ENDPOINT],
            thresholds=Thresholds(p95_ms=500, p99_ms=2000),
        ),
        LoadTest(
            name="gateway_stress",
            description="Beyond the expected peak: where does the gateway bend?",
            profile=PROFILES["stress"],
            endpoints=[_HEALTH, _MODELS, _CHAT_ENDPOINT],
            thresholds=Thresholds(p95_ms=1000, p99_ms=3000, max_failure_rate=0.05),
        ),
        LoadTest(
            name="slm_model_routing",
            description="Chat completions through the router (model 'auto'), easy to hard.",
            profile=PROFILES["load"],
            endpoints=[
                _routing("route_simple", "What is the capital of France?", 5),
                _routing("route_code", "Write a Python function that reverses a list.", 3),
                _routing(
                    "route_reasoning",
                    "Compare two caching strategies for an LLM gateway, step by step.",
                    2,
                ),
            ],
            thresholds=Thresholds(p95_ms=1500, p99_ms=2000),
        ),
        LoadTest(
            name="vector_search_load",
            description="Searches on one memory collection (set SOMA_COLLECTION).",
            profile=PROFILES["load"],
            endpoints=[
                Endpoint(
                    name="memory_search",
                    method="POST",
                    path="/v1/memory/collections/${SOMA_COLLECTION}/search",
                    body={"query": "how do I rotate an API key?", "k": 5},
                )
            ],
            thresholds=Thresholds(p95_ms=100, p99_ms=250),
            variables={"SOMA_COLLECTION": "the memory collection to search"},
        ),
    ]
}
"""The five presets."""


def get_loadtest(name: str) -> LoadTest:
    """A preset by name (``-`` and ``_`` are interchangeable).

    Raises:
        ConfigurationError: no such preset (the message lists them).
    """
    key = name.replace("-", "_")
    if key not in PRESETS:
        raise ConfigurationError(
            f"no load-test preset {name!r}; choose one of: {', '.join(PRESETS)}"
        )
    return PRESETS[key]
