"""The gateway's one settings class: every option is an environment variable with the
``SOMA_`` prefix (or a keyword argument in code and tests).

``pydantic-settings`` is used because it validates types, reads ``.env`` files and keeps
secrets as :class:`~pydantic.SecretStr`, so they never reach logs or reprs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PLACEHOLDERS = {"changeme", "change-me", "secret", "placeholder", "xxx", "todo"}


def default_data_dir() -> Path:
    """Where SomaAgent keeps its data when ``SOMA_DATA_DIR`` is not set."""
    return Path(platformdirs.user_data_dir("somaagent"))


class Settings(BaseSettings):
    """Gateway configuration. Environment variables use the ``SOMA_`` prefix.

    Attributes:
        data_dir: holds the SQLite file, vector data, caches and the first admin key file.
        database_url: SQLAlchemy async URL; default SQLite under ``data_dir``. PostgreSQL:
            ``postgresql+asyncpg://user:pass@host/db`` (install ``somaagent[postgres]``).
        mode: ``local`` allows placeholder secrets; ``production`` refuses them.

    The domain services take plain constructor arguments; the app factory fills them from here.
    """

    model_config = SettingsConfigDict(
        env_prefix="SOMA_", env_file=".env", extra="ignore", validate_default=True
    )

    mode: Literal["local", "production"] = "local"
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)

    # Providers. A provider is available when its key (or, for OpenAI-compatible servers,
    # its base URL) is set; the embedded local model is always available.
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    openai_compatible_api_key: SecretStr | None = None
    openai_compatible_base_url: str | None = None
    local_model_path: str | None = None
    default_model: str | None = None
    models_file: Path | None = None
    provider_timeout_s: float = Field(default=60.0, gt=0)
    fallback_chain: list[str] = Field(
        default_factory=list,
        description="registry names tried in order behind the router's choice for model 'auto' "
        "(JSON list in SOMA_FALLBACK_CHAIN); empty: Claude 3 Sonnet, GPT-3.5 Turbo, Llama 3 8B",
    )

    # Memory. The defaults need no server: the local all-MiniLM-L6-v2, ChromaDB under
    # data_dir/vectors and the FTS5 keyword index under data_dir/keyword.
    embedding_model: str = Field(
        default="local",
        description="the collections' embedder: local, openai:text-embedding-3-small, "
        "cohere:embed-english-v3.0, ...",
    )
    vector_store_url: str | None = Field(
        default=None, description="the vector store URL; default ChromaDB under data_dir/vectors"
    )
    embedding_cache: bool = Field(default=True, description="keep embeddings per text on disk")
    memory_chunk_size: int = Field(default=256, ge=16, le=8192, description="tokens per chunk")
    memory_chunk_overlap: int = Field(default=32, ge=0, le=1024)
    memory_max_document_chars: int = Field(default=2_000_000, ge=1)
    memory_index_messages: bool = Field(
        default=True, description="index conversation messages for conversation search"
    )

    # Limits.
    max_request_bytes: int = Field(default=1_048_576, gt=0)
    rate_limit_per_minute: int = Field(default=600, ge=0, description="0 turns it off")
    max_history_messages: int = Field(default=50, ge=1)
    default_max_tokens: int = Field(default=512, ge=1)

    # Router: the sampled shadow evaluation (somaagent.llm.shadow); off by default.
    route_shadow_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="share of routed answers from models cheaper than the judge to have judged "
        "(0 turns it off)",
    )
    route_shadow_judge: str | None = Field(
        default=None, description="the registry name of the judging model (needed when on)"
    )
    route_shadow_budget_usd: float = Field(
        default=1.0, ge=0.0, description="the most judging may cost per tenant per UTC day"
    )

    # SRE.
    prometheus_url: str | None = None
    slo_file: Path | None = None
    fault_injection: bool | None = Field(
        default=None,
        description="the fault points of /v1/admin/faults (chaos experiments); default: on in "
        "local mode, off in production",
    )

    # Capsules (the sandbox: see somaagent.capsules.sandbox).
    capsules_sandbox: Literal["auto", "bwrap", "landlock", "rlimits"] = Field(
        default="auto", description="the sandbox tier; auto: bubblewrap where it works"
    )
    capsules_allow_unconfined: bool = Field(
        default=False,
        description="run capsules whose permissions the sandbox tier cannot enforce",
    )
    capsules_allow_private_networks: bool = Field(
        default=False,
        description="let http_fetch, remote MCP capsules and the sandbox's egress proxy reach "
        "loopback, link-local and private addresses",
    )
    capsules_egress_mb: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="bytes (MiB) the egress proxy relays for one capsule execution, both "
        "directions, when the manifest sets no permissions.egress_mb; over it the connections "
        "are cut and the call fails",
    )
    capsules_warm_pool: int = Field(
        default=0,
        ge=0,
        le=8,
        description="sandboxes kept pre-started per capsule version, each used for one call "
        "(0: every call starts its own)",
    )
    capsules_http_hosts: list[str] = Field(
        default_factory=list,
        description="hosts http_fetch may reach (JSON list; *.example.com for subdomains)",
    )
    capsules_dir: Path | None = Field(
        default=None,
        description="the sandbox's working folder (other uids must be able to traverse it); "
        "default: <tmp>/somaagent-capsules",
    )

    # Durable workflows (somaagent.workflows; the app factory hands these to the engine).
    workflow_enabled: bool = Field(
        default=True, description="start the engine with the gateway (/v1/workflows: 503 if off)"
    )
    workflow_concurrency: int = Field(
        default=4, ge=1, le=256, description="runs this process executes at once"
    )
    workflow_executor_id: str | None = Field(
        default=None,
        description="this process's name among several on PostgreSQL; default: host, pid and a "
        "random suffix (local on SQLite)",
    )
    workflow_polling_interval_s: float = Field(
        default=0.25, gt=0, le=10, description="how often the queue and event streams are polled"
    )
    workflow_maintenance_interval_s: float = Field(
        default=5.0, gt=0, description="how often gauges refresh and dead processes are sought"
    )
    workflow_max_recovery_attempts: int = Field(
        default=20, ge=1, description="recoveries of one run before it is given up as failed"
    )
    workflow_upload_ttl_hours: float = Field(
        default=168.0,
        ge=0,
        description="hours an upload for document_ingest is kept; after that new runs refuse "
        "it and a sweep removes it, never while a queued or running run names it (0: kept "
        "until deleted)",
    )
    workflow_ingest_root: Path | None = Field(
        default=None,
        description="the folder whose files document_ingest may read by path (input.paths); "
        "unset: no server-side files are read",
    )

    # Operations.
    log_level: str = "info"
    bootstrap_admin_key: bool = True

    @property
    def fault_points_enabled(self) -> bool:
        """Whether chaos experiments may put faults on this gateway's fault points."""
        if self.fault_injection is not None:
            return self.fault_injection
        return self.mode == "local"

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.mode == "production":
            for name in ("openai_api_key", "anthropic_api_key", "openai_compatible_api_key"):
                value = getattr(self, name)
                if value is not None and value.get_secret_value().lower() in _PLACEHOLDERS:
                    raise ValueError(f"SOMA_{name.upper()} is a placeholder; set a real key")
            if self.database_url is None:
                raise ValueError("SOMA_DATABASE_URL must be set in production mode")
        return self

    @model_validator(mode="after")
    def _shadow_needs_a_judge(self) -> Settings:
        if self.route_shadow_rate > 0 and not self.route_shadow_judge:
            raise ValueError(
                "SOMA_ROUTE_SHADOW_RATE is above 0 but SOMA_ROUTE_SHADOW_JUDGE names no judge "
                "model; set it to a registry model name (e.g. gpt-4o)"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'soma.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")
