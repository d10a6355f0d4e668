"""The configuration contract (design §5): one frozen object, built once from the environment.

Explicit argument > environment > default. Every problem is reported as one clear line.
"""

from __future__ import annotations

import dataclasses
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from function import core, envvars, placeholders
from function.core import gate
from function.errors import SettingsError
from function.secret import Secret

SCHEDULERS: Final = ("local", "cloudtasks", "qstash", "rabbitmq")
CHECK_SCHEDULES: Final = ("learned", "fixed")
# Every variable reaper reads (tests keep this in sync with from_env), plus the server's own.
VARIABLES: Final = frozenset(
    {
        "PORT",
        "CLOUDDC_ENDPOINT",
        "CLOUDDC_PROJECT_ID",
        "CLOUDDC_AUTH_TOKEN",
        "CLOUDDC_AUTH_TOKEN_FILE",
        "REAPER_SCHEDULER",
        "REAPER_SELF_URL",
        "REAPER_DELAY_SERVICE_URL",
        "K_SINK",
        "REAPER_CHECK_DELAY",
        "REAPER_CHECK_MAX_DELAY",
        "REAPER_CHECK_SCHEDULE",
        "REAPER_EXPECTED_DELETE_SECONDS",
        "REAPER_DEADLINE",
        "REAPER_DRY_RUN",
        "REAPER_HTTP_TIMEOUT",
        "REAPER_HTTP_DEADLINE",
        "REAPER_MAX_ANSWER_BYTES",
        "REAPER_CA_BUNDLE",
        "REAPER_MAX_RETRIES",
        "REAPER_MAX_BODY_BYTES",
        "REAPER_EVENT_SOURCE",
        "REAPER_LOG_LEVEL",
        "REAPER_CLOUDTASKS_QUEUE",
        "REAPER_CLOUDTASKS_SERVICE_ACCOUNT",
        "REAPER_CLOUDTASKS_AUDIENCE",
        "REAPER_CLOUDTASKS_API",
        "GCE_METADATA_HOST",
        "QSTASH_URL",
        "QSTASH_TOKEN",
        "QSTASH_CURRENT_SIGNING_KEY",
        "QSTASH_NEXT_SIGNING_KEY",
        "REAPER_RABBITMQ_URL",
        "REAPER_RABBITMQ_QUEUE",
        "REAPER_RABBITMQ_DECLARE_QUEUE",
        "GOOGLE_CLOUD_PROJECT",
        "REAPER_EXPIRY_KEY",
        "REAPER_WEBHOOK_SECRET",
        "REAPER_TOKEN_FROM_REQUEST",
        "REAPER_ALLOWED_PROJECTS",
        "REAPER_PROTECT_KEY",
        "REAPER_EVENT_KEY",
        "REAPER_EVENT_KEY_FILE",
        "REAPER_EVENT_KEY_PREVIOUS",
        "REAPER_INBOUND_AUTH",
        "REAPER_OIDC_JWKS_URL",
        "REAPER_OIDC_AUDIENCE",
        "REAPER_OIDC_ALLOWED_EMAILS",
        "REAPER_MAX_MESSAGES_PER_REQUEST",
        "CLOUDDC_IAM_ENDPOINT",
        "CLOUDDC_IAM_DOMAIN",
        "CLOUDDC_IAM_USER",
        "CLOUDDC_IAM_PASSWORD",
        "CLOUDDC_IAM_PASSWORD_FILE",
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN",
        "HUAWEICLOUD_CREDENTIALS_FROM_METADATA",
        "REAPER_METADATA_URL",
        "REAPER_STATE_URL",
        "REAPER_STATE_TIMEOUT",
        "REAPER_MAX_CALLS_PER_SECOND",
    }
)
SERVER_VARIABLES: Final = frozenset(
    {
        "FUNCTION_TARGET",
        "FUNCTION_SOURCE",
        "FUNCTION_SIGNATURE_TYPE",
        "THREADS",
        "WORKERS",
        "REAPER_PIN_WORKERS",
        "HOST",
        "PORT",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "PATH",
    }
)
REQUIRED: Final = (
    "CLOUDDC_ENDPOINT",
    (
        "CLOUDDC_AUTH_TOKEN",
        "CLOUDDC_AUTH_TOKEN_FILE",
        "CLOUDDC_IAM_PASSWORD",
        "CLOUDDC_IAM_PASSWORD_FILE",
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_CREDENTIALS_FROM_METADATA",
    ),
    ("REAPER_EVENT_KEY", "REAPER_EVENT_KEY_FILE"),
    "REAPER_INBOUND_AUTH",
    ("REAPER_ALLOWED_PROJECTS", "CLOUDDC_PROJECT_ID"),
)
INBOUND_METHODS: Final = ("webhook", "qstash", "oidc", "platform")
GOOGLE_JWKS_URL: Final = "https://www.googleapis.com/oauth2/v3/certs"
MIN_EVENT_KEY_LEN: Final = 16
_PROJECT_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
CLOUDTASKS_QUEUE: Final = re.compile(r"^projects/[^/]+/locations/[^/]+/queues/[^/]+$")
CLOUDTASKS_MAX_DELAY: Final = 30 * 24 * 3600.0


@dataclass(frozen=True)
class Settings:
    """Everything the function needs to know about its surroundings."""

    endpoint: str
    project_id: str | None = None
    auth_token: Secret | None = dataclasses.field(default=None, repr=False)
    auth_token_file: Path | None = None
    scheduler: str = "local"
    self_url: str = "http://127.0.0.1:8080/"
    delay_service_url: str = "http://127.0.0.1:8089"
    sink_url: str | None = None
    check_delay: float = core.CHECK_DELAY
    check_max_delay: float = core.CHECK_MAX_DELAY
    # learned: the first check when the delete is expected done, from observed deletes (issue 13);
    # fixed: REAPER_CHECK_DELAY, then doubling. The estimate starts at expected_delete_seconds.
    check_schedule: str = "learned"
    expected_delete_seconds: float | None = None
    deadline: float = core.DEADLINE
    dry_run: bool = False
    http_timeout: float = 10.0
    # One call as a whole (connect and the complete answer), besides each read's http_timeout.
    http_deadline: float = 30.0
    max_answer_bytes: int = 4 * 1024 * 1024
    ca_bundle: Path | None = None
    max_retries: int = 8
    max_body_bytes: int = 1024 * 1024
    event_source: str = "/reaper"
    log_level: str = "INFO"
    cloudtasks_queue: str | None = None
    cloudtasks_service_account: str | None = None
    cloudtasks_audience: str | None = None
    cloudtasks_api: str = "https://cloudtasks.googleapis.com"
    metadata_host: str = "metadata.google.internal"
    qstash_url: str = "https://qstash.upstash.io"
    qstash_token: Secret | None = dataclasses.field(default=None, repr=False)
    qstash_current_signing_key: Secret | None = dataclasses.field(default=None, repr=False)
    qstash_next_signing_key: Secret | None = dataclasses.field(default=None, repr=False)
    rabbitmq_url: Secret = dataclasses.field(default=Secret("amqp://guest:guest@127.0.0.1:5672/"), repr=False)
    rabbitmq_queue: str = "reaper.events"
    rabbitmq_declare_queue: bool = True
    google_project: str | None = None  # log lines carry Cloud Logging's trace field when set
    expiry_key: str = gate.EXPIRY_KEY
    webhook_secret: Secret | None = dataclasses.field(default=None, repr=False)
    token_from_request: bool = False
    # The trust model (design §7): an empty allowlist means "CLOUDDC_PROJECT_ID alone"; None: every project.
    allowed_projects: frozenset[str] | None = frozenset()
    protect_key: str = gate.PROTECT_KEY
    event_key: Secret | None = dataclasses.field(default=None, repr=False)
    event_key_previous: Secret | None = dataclasses.field(default=None, repr=False)
    inbound_auth: tuple[str, ...] = ()
    oidc_jwks_url: str = GOOGLE_JWKS_URL
    oidc_audience: str | None = None
    oidc_allowed_emails: frozenset[str] = frozenset()
    max_messages_per_request: int = 100
    # The credential chain (design §7a): the first configured source wins.
    iam_endpoint: str | None = None
    iam_domain: str | None = None
    iam_user: str | None = None
    iam_password: Secret | None = dataclasses.field(default=None, repr=False)
    sdk_ak: Secret | None = dataclasses.field(default=None, repr=False)
    sdk_sk: Secret | None = dataclasses.field(default=None, repr=False)
    sdk_security_token: Secret | None = dataclasses.field(default=None, repr=False)
    credentials_from_metadata: bool = False
    metadata_url: str = "http://169.254.169.254"
    # The fleet's shared store (design §9): None is in-process, for one process only.
    state_url: Secret | None = dataclasses.field(default=None, repr=False)
    state_timeout: float = 1.0
    # The API budget per project, shared through the store (None: no budget, every call goes at once).
    max_calls_per_second: float | None = None

    def __post_init__(self) -> None:
        envvars.require_url("CLOUDDC_ENDPOINT", self.endpoint)
        envvars.require_url("REAPER_SELF_URL", self.self_url)
        envvars.require_url("REAPER_DELAY_SERVICE_URL", self.delay_service_url)
        self._check_state_store()
        if self.sink_url is not None:
            envvars.require_url("K_SINK", self.sink_url)
        self._check_credentials()
        if self.scheduler not in SCHEDULERS:
            raise SettingsError(
                f"REAPER_SCHEDULER={self.scheduler!r}: expected one of {', '.join(SCHEDULERS)}"
            )
        if self.check_max_delay < self.check_delay:
            raise SettingsError("REAPER_CHECK_MAX_DELAY must be >= REAPER_CHECK_DELAY")
        if self.deadline <= self.check_delay:
            raise SettingsError("REAPER_DEADLINE must be longer than REAPER_CHECK_DELAY")
        if self.check_schedule not in CHECK_SCHEDULES:
            raise SettingsError(
                f"REAPER_CHECK_SCHEDULE={self.check_schedule!r}: expected one of {', '.join(CHECK_SCHEDULES)}"
            )
        if self.expected_delete_seconds is not None and not 0 < self.expected_delete_seconds < self.deadline:
            raise SettingsError("REAPER_EXPECTED_DELETE_SECONDS must be above 0 and below REAPER_DEADLINE")
        self._check_outbound()
        self._check_transport()
        self._check_trust()
        self._check_placeholders()

    def _check_placeholders(self) -> None:
        """Refuse a secret left at the deploy files' placeholder: it is public, so it protects nothing."""
        secrets: list[tuple[str, Secret | None]] = [
            ("REAPER_EVENT_KEY (or the file REAPER_EVENT_KEY_FILE names)", self.event_key),
            ("REAPER_EVENT_KEY_PREVIOUS", self.event_key_previous),
            ("REAPER_WEBHOOK_SECRET", self.webhook_secret),
            ("QSTASH_CURRENT_SIGNING_KEY", self.qstash_current_signing_key),
            ("QSTASH_NEXT_SIGNING_KEY", self.qstash_next_signing_key),
            ("QSTASH_TOKEN", self.qstash_token),
            ("CLOUDDC_AUTH_TOKEN", self.auth_token),
            ("CLOUDDC_IAM_PASSWORD", self.iam_password),
            ("HUAWEICLOUD_SDK_SK", self.sdk_sk),
            ("REAPER_STATE_URL", self.state_url),
        ]
        if self.scheduler == "rabbitmq":
            secrets.append(("REAPER_RABBITMQ_URL", self.rabbitmq_url))
        for name, secret in secrets:
            if secret is not None and placeholders.is_placeholder(secret.reveal()):
                raise SettingsError(f"{name} is the deploy files' placeholder: set a secret of your own")

    def _check_outbound(self) -> None:
        if self.http_timeout <= 0:
            raise SettingsError("REAPER_HTTP_TIMEOUT must be above 0")
        if self.http_deadline < self.http_timeout:
            raise SettingsError("REAPER_HTTP_DEADLINE must be at least REAPER_HTTP_TIMEOUT")
        if self.max_answer_bytes < 64 * 1024:
            raise SettingsError("REAPER_MAX_ANSWER_BYTES must be at least 65536 (a ListInstances page)")
        if self.ca_bundle is not None:
            try:
                ssl.create_default_context(cafile=str(self.ca_bundle))
            except (OSError, ssl.SSLError) as exc:
                raise SettingsError(
                    f"REAPER_CA_BUNDLE={str(self.ca_bundle)[:80]!r}: not a readable PEM file of CA "
                    f"certificates ({type(exc).__name__})"
                ) from None

    def _check_trust(self) -> None:
        if self.allowed_projects == frozenset():
            if not self.project_id:
                raise SettingsError(
                    "set REAPER_ALLOWED_PROJECTS (project ids, or '*' for every project) "
                    "or CLOUDDC_PROJECT_ID"
                )
            object.__setattr__(self, "allowed_projects", frozenset({self.project_id}))
        for project in self.allowed_projects or ():
            if not _PROJECT_ID.fullmatch(project):
                raise SettingsError(f"REAPER_ALLOWED_PROJECTS: {project[:40]!r} is not a project id")
        if self.event_key is None:
            raise SettingsError(
                "set REAPER_EVENT_KEY or REAPER_EVENT_KEY_FILE "
                "(the key that signs reaper's own follow-up events)"
            )
        for name, key in (
            ("REAPER_EVENT_KEY", self.event_key),
            ("REAPER_EVENT_KEY_PREVIOUS", self.event_key_previous),
        ):
            if key is not None and len(key.reveal()) < MIN_EVENT_KEY_LEN:
                raise SettingsError(f"{name} must be at least {MIN_EVENT_KEY_LEN} characters")
        if not self.inbound_auth:
            raise SettingsError(
                "set REAPER_INBOUND_AUTH to the methods that authenticate triggers: "
                + ", ".join(INBOUND_METHODS)
            )
        unknown = [m for m in self.inbound_auth if m not in INBOUND_METHODS]
        if unknown:
            raise SettingsError(
                f"REAPER_INBOUND_AUTH: unknown method {unknown[0]!r}; expected {', '.join(INBOUND_METHODS)}"
            )
        secret = self.webhook_secret
        if "webhook" in self.inbound_auth and not (secret and envvars.valid_webhook_secret(secret.reveal())):
            raise SettingsError(
                "REAPER_INBOUND_AUTH=webhook needs REAPER_WEBHOOK_SECRET: 'whsec_' + base64 of 24 to 64 bytes"
            )
        if "qstash" in self.inbound_auth and self.qstash_current_signing_key is None:
            raise SettingsError("REAPER_INBOUND_AUTH=qstash needs QSTASH_CURRENT_SIGNING_KEY")
        if "oidc" in self.inbound_auth:
            envvars.require_url("REAPER_OIDC_JWKS_URL", self.oidc_jwks_url)
            if not self.oidc_allowed_emails:
                raise SettingsError(
                    "REAPER_INBOUND_AUTH=oidc needs REAPER_OIDC_ALLOWED_EMAILS (service accounts)"
                )
        if self.max_messages_per_request < 1:
            raise SettingsError("REAPER_MAX_MESSAGES_PER_REQUEST must be at least 1")

    def _check_credentials(self) -> None:
        sources = [
            self.auth_token is not None or self.auth_token_file is not None,
            self.iam_password is not None,
            self.sdk_ak is not None or self.sdk_sk is not None,
            self.credentials_from_metadata,
        ]
        if not any(sources) and not self.token_from_request:
            raise SettingsError(
                "set a credential source: CLOUDDC_AUTH_TOKEN(_FILE), CLOUDDC_IAM_PASSWORD(_FILE) with "
                "CLOUDDC_IAM_ENDPOINT/DOMAIN/USER, HUAWEICLOUD_SDK_AK and _SK, "
                "HUAWEICLOUD_CREDENTIALS_FROM_METADATA=true, or REAPER_TOKEN_FROM_REQUEST=true"
            )
        if self.iam_password is not None:
            needed = {
                "CLOUDDC_IAM_ENDPOINT": self.iam_endpoint,
                "CLOUDDC_IAM_DOMAIN": self.iam_domain,
                "CLOUDDC_IAM_USER": self.iam_user,
                "CLOUDDC_PROJECT_ID": self.project_id,
            }
            for name, value in needed.items():
                if not value:
                    raise SettingsError(f"the IAM password source needs {name}")
            assert self.iam_endpoint is not None
            envvars.require_url("CLOUDDC_IAM_ENDPOINT", self.iam_endpoint)
        if (self.sdk_ak is None) != (self.sdk_sk is None):
            raise SettingsError("set both HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK")
        if self.credentials_from_metadata:
            envvars.require_url("REAPER_METADATA_URL", self.metadata_url)

    def _check_transport(self) -> None:
        if self.scheduler == "cloudtasks":
            if not self.cloudtasks_queue or not CLOUDTASKS_QUEUE.match(self.cloudtasks_queue):
                raise SettingsError(
                    "REAPER_CLOUDTASKS_QUEUE must be projects/PROJECT/locations/LOCATION/queues/QUEUE"
                )
            if not self.cloudtasks_service_account:
                raise SettingsError("REAPER_CLOUDTASKS_SERVICE_ACCOUNT is required (the OIDC identity)")
            if self.deadline > CLOUDTASKS_MAX_DELAY:
                raise SettingsError("REAPER_DEADLINE exceeds Cloud Tasks' 30-day scheduling limit")
            envvars.require_url("REAPER_CLOUDTASKS_API", self.cloudtasks_api)
        if self.scheduler == "qstash":
            if self.qstash_token is None:
                raise SettingsError("QSTASH_TOKEN is required for REAPER_SCHEDULER=qstash")
            envvars.require_url("QSTASH_URL", self.qstash_url)
        if self.scheduler == "rabbitmq":
            if urlsplit(self.rabbitmq_url.reveal()).scheme not in ("amqp", "amqps"):
                raise SettingsError("REAPER_RABBITMQ_URL must be an amqp:// or amqps:// URL")
            if not self.rabbitmq_queue:
                raise SettingsError("REAPER_RABBITMQ_QUEUE must not be empty")

    def credential_source(self) -> str:
        """The name of the credential source in use (the only thing about credentials that is logged)."""
        if self.auth_token is not None or self.auth_token_file is not None:
            chosen = "token-file" if self.auth_token_file is not None else "token"
        elif self.iam_password is not None:
            chosen = "iam-password"
        elif self.sdk_ak is not None:
            chosen = "aksk"
        elif self.credentials_from_metadata:
            chosen = "metadata"
        else:
            chosen = "none"
        return f"request, else {chosen}" if self.token_from_request else chosen

    def _check_state_store(self) -> None:
        if self.state_url is not None:
            try:
                parts = urlsplit(self.state_url.reveal())
                usable = parts.scheme in ("redis", "rediss") and bool(parts.hostname) and parts.port != 0
            except ValueError:
                usable = False
            if not usable:
                raise SettingsError("REAPER_STATE_URL must be a redis:// or rediss:// URL with a host")
        if not 0 < self.state_timeout <= 30:
            raise SettingsError("REAPER_STATE_TIMEOUT must be above 0 and at most 30 seconds")
        if self.max_calls_per_second is not None and not 5 <= self.max_calls_per_second <= 10_000:
            raise SettingsError("REAPER_MAX_CALLS_PER_SECOND must be from 5 to 10000 (calls per second)")

    def public_view(self) -> dict[str, Any]:
        """The effective settings as loggable values, secrets masked."""
        view = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in view.items():
            if isinstance(value, Secret):
                view[name] = "***"
        view["rabbitmq_url"] = envvars.mask_password(self.rabbitmq_url.reveal())
        view["state_url"] = envvars.mask_password(self.state_url.reveal()) if self.state_url else None
        for name in ("endpoint", "self_url", "delay_service_url", "sink_url", "cloudtasks_api", "qstash_url",
                     "oidc_jwks_url", "iam_endpoint", "metadata_url"):  # fmt: skip
            if isinstance(view[name], str):
                view[name] = envvars.mask_password(view[name])
        view["auth_token_file"] = str(self.auth_token_file) if self.auth_token_file else None
        view["ca_bundle"] = str(self.ca_bundle) if self.ca_bundle else None
        view["allowed_projects"] = sorted(self.allowed_projects) if self.allowed_projects is not None else "*"
        view["oidc_allowed_emails"] = sorted(self.oidc_allowed_emails)
        view["credential_source"] = self.credential_source()
        return view

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build and validate settings from ``environ`` (default ``os.environ``); kwargs win."""
        env = os.environ if environ is None else environ
        port = envvars.integer(env, "PORT", 8080)
        token = env.get("CLOUDDC_AUTH_TOKEN") or None
        token_file = env.get("CLOUDDC_AUTH_TOKEN_FILE") or None
        values: dict[str, Any] = {
            "endpoint": env.get("CLOUDDC_ENDPOINT", ""),
            "project_id": env.get("CLOUDDC_PROJECT_ID") or None,
            "auth_token": Secret(token) if token else None,
            "auth_token_file": Path(token_file) if token_file else None,
            "scheduler": env.get("REAPER_SCHEDULER", "local").strip().lower(),
            "self_url": env.get("REAPER_SELF_URL") or f"http://127.0.0.1:{port}/",
            "delay_service_url": env.get("REAPER_DELAY_SERVICE_URL", "http://127.0.0.1:8089"),
            "sink_url": env.get("K_SINK") or None,
            "check_delay": envvars.seconds(env, "REAPER_CHECK_DELAY", core.CHECK_DELAY),
            "check_max_delay": envvars.seconds(env, "REAPER_CHECK_MAX_DELAY", core.CHECK_MAX_DELAY),
            "check_schedule": env.get("REAPER_CHECK_SCHEDULE", "learned").strip().lower(),
            "expected_delete_seconds": envvars.seconds(env, "REAPER_EXPECTED_DELETE_SECONDS", 0.0) or None,
            "deadline": envvars.seconds(env, "REAPER_DEADLINE", core.DEADLINE),
            "dry_run": envvars.boolean(env, "REAPER_DRY_RUN", default=False),
            "http_timeout": envvars.seconds(env, "REAPER_HTTP_TIMEOUT", 10.0),
            "http_deadline": envvars.seconds(env, "REAPER_HTTP_DEADLINE", 30.0),
            "max_answer_bytes": envvars.integer(env, "REAPER_MAX_ANSWER_BYTES", 4 * 1024 * 1024),
            "ca_bundle": Path(env["REAPER_CA_BUNDLE"]) if env.get("REAPER_CA_BUNDLE") else None,
            "max_retries": envvars.integer(env, "REAPER_MAX_RETRIES", 8),
            "max_body_bytes": envvars.integer(env, "REAPER_MAX_BODY_BYTES", 1024 * 1024),
            "event_source": env.get("REAPER_EVENT_SOURCE", "/reaper"),
            "log_level": env.get("REAPER_LOG_LEVEL", "INFO").upper(),
            "cloudtasks_queue": env.get("REAPER_CLOUDTASKS_QUEUE") or None,
            "cloudtasks_service_account": env.get("REAPER_CLOUDTASKS_SERVICE_ACCOUNT") or None,
            "cloudtasks_audience": env.get("REAPER_CLOUDTASKS_AUDIENCE") or None,
            "cloudtasks_api": env.get("REAPER_CLOUDTASKS_API") or "https://cloudtasks.googleapis.com",
            "metadata_host": env.get("GCE_METADATA_HOST") or "metadata.google.internal",
            "qstash_url": env.get("QSTASH_URL") or "https://qstash.upstash.io",
            "qstash_token": envvars.secret(env, "QSTASH_TOKEN"),
            "qstash_current_signing_key": envvars.secret(env, "QSTASH_CURRENT_SIGNING_KEY"),
            "qstash_next_signing_key": envvars.secret(env, "QSTASH_NEXT_SIGNING_KEY"),
            "rabbitmq_url": Secret(env.get("REAPER_RABBITMQ_URL") or "amqp://guest:guest@127.0.0.1:5672/"),
            "rabbitmq_queue": env.get("REAPER_RABBITMQ_QUEUE", "reaper.events"),
            "rabbitmq_declare_queue": envvars.boolean(env, "REAPER_RABBITMQ_DECLARE_QUEUE", default=True),
            "google_project": env.get("GOOGLE_CLOUD_PROJECT") or None,
            "expiry_key": env.get("REAPER_EXPIRY_KEY") or gate.EXPIRY_KEY,
            "webhook_secret": envvars.secret(env, "REAPER_WEBHOOK_SECRET"),
            "token_from_request": envvars.boolean(env, "REAPER_TOKEN_FROM_REQUEST", default=False),
            "allowed_projects": envvars.projects(env.get("REAPER_ALLOWED_PROJECTS", "")),
            "protect_key": env.get("REAPER_PROTECT_KEY") or gate.PROTECT_KEY,
            "event_key": envvars.secret_or_file(env, "REAPER_EVENT_KEY"),
            "event_key_previous": envvars.secret(env, "REAPER_EVENT_KEY_PREVIOUS"),
            "inbound_auth": envvars.names(env.get("REAPER_INBOUND_AUTH", "")),
            "oidc_jwks_url": env.get("REAPER_OIDC_JWKS_URL") or GOOGLE_JWKS_URL,
            "oidc_audience": env.get("REAPER_OIDC_AUDIENCE") or None,
            "oidc_allowed_emails": frozenset(envvars.names(env.get("REAPER_OIDC_ALLOWED_EMAILS", ""))),
            "max_messages_per_request": envvars.integer(env, "REAPER_MAX_MESSAGES_PER_REQUEST", 100),
            "iam_endpoint": env.get("CLOUDDC_IAM_ENDPOINT") or None,
            "iam_domain": env.get("CLOUDDC_IAM_DOMAIN") or None,
            "iam_user": env.get("CLOUDDC_IAM_USER") or None,
            "iam_password": envvars.secret_or_file(env, "CLOUDDC_IAM_PASSWORD"),
            "sdk_ak": envvars.secret(env, "HUAWEICLOUD_SDK_AK"),
            "sdk_sk": envvars.secret(env, "HUAWEICLOUD_SDK_SK"),
            "sdk_security_token": envvars.secret(env, "HUAWEICLOUD_SDK_SECURITY_TOKEN"),
            "credentials_from_metadata": envvars.boolean(
                env, "HUAWEICLOUD_CREDENTIALS_FROM_METADATA", default=False
            ),
            "metadata_url": env.get("REAPER_METADATA_URL") or "http://169.254.169.254",
            "state_url": envvars.secret(env, "REAPER_STATE_URL"),
            "state_timeout": envvars.seconds(env, "REAPER_STATE_TIMEOUT", 1.0),
            "max_calls_per_second": envvars.rate_or_none(env, "REAPER_MAX_CALLS_PER_SECOND"),
        }
        if not values["endpoint"]:
            raise SettingsError("CLOUDDC_ENDPOINT is required (base URL of the CloudDC API)")
        values.update(overrides)
        return cls(**values)
