"""SLO specs: what users write (YAML), validated by pydantic models that reject unknown fields.

An SLO is an objective (a percentage strictly between 0 and 100) over a rolling window (30 days
by default) on an SLI. Every SLI here is a ratio of events, so every SLO has an error budget:

* ``ratio``: events counted by a counter (a histogram's ``_count`` will do), ``bad`` being the
  extra label matchers that pick the failed events (e.g. ``http_response_status_code=~"5.."``);
* ``latency``: a histogram's events, good when they fall in the bucket ``le=threshold``, so
  "95% of requests under 200 ms" is objective 95 with ``threshold: 0.2``;
* ``uptime``: samples of a 0/1 gauge such as Prometheus's ``up``, bad when 0.

Selectors are PromQL label matchers written as strings (``http_route=~"/v1/memory(/.*)?"``),
parsed and checked here so a typo is an error naming the field rather than a silent no-data.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from somaagent.errors import ConfigurationError

__all__ = [
    "DEFAULT_SPECS_FILE",
    "LatencySLI",
    "Matcher",
    "RatioSLI",
    "SLISpec",
    "SLOFile",
    "SLOSpec",
    "UptimeSLI",
    "default_specs",
    "format_duration",
    "load_specs",
    "parse_duration",
    "parse_specs",
]

DEFAULT_SPECS_FILE = Path(__file__).with_name("defaults.yaml")

_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:\d+[wdhms])+")
_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')
_NAME = r"^[a-z][a-z0-9-]{0,62}$"


def parse_duration(text: str) -> int:
    """Seconds in a Prometheus-style duration such as ``30d``, ``1h30m`` or ``5m``.

    Raises:
        ValueError: the text is not a positive duration made of ``w d h m s`` parts.
    """
    if not isinstance(text, str) or not _DURATION.fullmatch(text.strip()):
        raise ValueError(f"{text!r} is not a positive duration such as 30d, 6h or 5m")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration such as 30d, 6h or 5m")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest Prometheus duration for ``seconds`` (``2592000`` → ``30d``)."""
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    parts: list[str] = []
    rest = seconds
    for unit in ("d", "h", "m", "s"):  # weeks are left out: "4w2d" reads worse than "30d"
        count, rest = divmod(rest, _UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


class Matcher(BaseModel):
    """One PromQL label matcher, such as ``http_response_status_code=~"5.."``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        match = _MATCHER.fullmatch(data)
        if match is None:
            raise ValueError(
                f'{data!r} is not a label matcher such as label="value" or label=~"regex"'
            )
        label, op, raw = match.groups()
        return {"label": label, "op": op, "value": re.sub(r"\\(.)", r"\1", raw)}

    @model_validator(mode="after")
    def _check_regex(self) -> Matcher:
        if self.label == "__name__":
            raise ValueError("select the metric with `metric`, not a __name__ matcher")
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {self.value!r}: {exc}") from exc
        return self

    def promql(self) -> str:
        """The matcher as PromQL (``label=~"value"``, quotes and backslashes escaped)."""
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{self.op}"{escaped}"'

    def accepts(self, value: str) -> bool:
        """Whether a label value satisfies this matcher (absent labels are the empty string)."""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        matched = re.fullmatch(self.value, value) is not None
        return matched if self.op == "=~" else not matched

    def __str__(self) -> str:
        return self.promql()


class _SLIBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    selector: list[Matcher] = Field(
        default_factory=list, description="matchers that pick the SLO's events"
    )

    @field_validator("selector")
    @classmethod
    def _unique_labels(cls, matchers: list[Matcher]) -> list[Matcher]:
        seen: set[tuple[str, str]] = set()
        for matcher in matchers:
            key = (matcher.label, matcher.op)
            if key in seen:
                raise ValueError(f"the matcher {matcher.label}{matcher.op} appears twice")
            seen.add(key)
        return matchers

    @field_validator("metric", check_fields=False)
    @classmethod
    def _check_metric(cls, name: str) -> str:
        if not _METRIC.fullmatch(name):
            raise ValueError(f"{name!r} is not a Prometheus metric name")
        return name


class RatioSLI(_SLIBase):
    """Events counted by a counter; ``bad`` adds the matchers that pick the failed ones."""

    kind: Literal["ratio"] = "ratio"
    metric: str = Field(description="a counter, e.g. http_server_request_duration_seconds_count")
    bad: list[Matcher] = Field(min_length=1, description="extra matchers for the bad events")


class LatencySLI(_SLIBase):
    """Histogram events, good when at most ``threshold`` seconds (a bucket's ``le``)."""

    kind: Literal["latency"] = "latency"
    metric: str = Field(description="a histogram's base name, without _bucket or _count")
    threshold: Decimal = Field(gt=0, description="seconds; must be one of the buckets' bounds")

    @field_validator("metric")
    @classmethod
    def _base_name(cls, name: str) -> str:
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix):
                raise ValueError(f"name the histogram without {suffix!r}")
        return name


class UptimeSLI(_SLIBase):
    """Samples of a 0/1 gauge (``up`` by default): the share of samples that were 1."""

    kind: Literal["uptime"] = "uptime"
    metric: str = "up"


SLISpec = Annotated[RatioSLI | LatencySLI | UptimeSLI, Field(discriminator="kind")]


class SLOSpec(BaseModel):
    """One service level objective.

    Attributes:
        name: a unique slug, used as the ``slo`` label of recorded series and alerts.
        service: the service it belongs to (one dashboard per service).
        objective: the target percentage of good events, strictly between 0 and 100.
        window: the rolling compliance window, a Prometheus duration (default ``30d``).
        sli: how good and bad events are counted.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    service: str = Field(pattern=_NAME)
    description: str = ""
    objective: Decimal = Field(gt=0, lt=100, description="percent of good events")
    window: str = "30d"
    sli: SLISpec

    @field_validator("objective", mode="before")
    @classmethod
    def _exact_objective(cls, value: Any) -> Any:
        # YAML gives floats; their shortest repr is the number the user wrote (99.9, not
        # 99.900000000000005684...), so go through it rather than the binary value.
        return Decimal(repr(value)) if isinstance(value, float) else value

    @field_validator("window")
    @classmethod
    def _check_window(cls, value: str) -> str:
        parse_duration(value)
        return value.strip()

    @cached_property
    def window_seconds(self) -> int:
        """The window in seconds."""
        return parse_duration(self.window)

    @cached_property
    def error_budget(self) -> Decimal:
        """The allowed share of bad events: ``1 - objective / 100``, exactly (``0.001``)."""
        return (Decimal(100) - self.objective) / Decimal(100)

    @cached_property
    def target(self) -> Decimal:
        """The objective as a ratio (``0.999``)."""
        return self.objective / Decimal(100)

    @property
    def budget_seconds(self) -> Decimal:
        """The budget as time: the share of the window that may be bad (30d at 99.9% → 2592 s)."""
        return self.error_budget * self.window_seconds


class SLOFile(BaseModel):
    """A file of SLO specs: ``slos: [...]``, names unique."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    slos: list[SLOSpec] = Field(min_length=1)

    @field_validator("slos")
    @classmethod
    def _unique_names(cls, slos: list[SLOSpec]) -> list[SLOSpec]:
        names = [slo.name for slo in slos]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"SLO names must be unique; repeated: {', '.join(duplicates)}")
        return slos


def _yaml_load(text: str, where: str) -> Any:
    try:
        import yaml
    except ModuleNotFoundError as exc:  # pragma: no cover - PyYAML comes with the server extra
        raise ConfigurationError(
            "reading SLO specs needs PyYAML: pip install pyyaml (or 'somaagent[server]')"
        ) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{where}: not valid YAML: {exc}") from exc


def parse_specs(text: str, *, where: str = "<specs>") -> list[SLOSpec]:
    """Parse and validate a YAML document of SLO specs.

    Raises:
        ConfigurationError: invalid YAML.
        pydantic.ValidationError: an invalid spec; each error's ``loc`` names the field
            (``slos.2.objective``).
    """
    data = _yaml_load(text, where)
    return list(SLOFile.model_validate(data).slos)


def load_specs(path: str | Path | None = None) -> list[SLOSpec]:
    """The SLO specs in ``path``, or the nine shipped defaults when ``path`` is ``None``."""
    source = Path(path) if path is not None else DEFAULT_SPECS_FILE
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read SLO specs from {source}: {exc}") from exc
    return parse_specs(text, where=str(source))


def default_specs() -> list[SLOSpec]:
    """The nine default SLOs (``defaults.yaml``): the original design's eight and
    ``workflow-success``."""
    return load_specs(None)
