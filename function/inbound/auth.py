"""Who may ask for a delete: the methods of ``REAPER_INBOUND_AUTH`` (design §7).

An external event (``instance-expired``, ``instance-sweep``) is accepted only when one listed method
accepts the request that carried it, whatever its envelope:

- ``webhook``: Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``; key
  ``REAPER_WEBHOOK_SECRET``); a ``webhook-id`` is accepted once inside the 5-minute window.
- ``qstash``: Upstash's ``Upstash-Signature`` JWT (HS256, issuer ``Upstash``, ``sub`` = our URL, body
  hash; current key, then next); a ``jti`` is accepted once while the token is valid.
- ``oidc``: a Google-signed ID token in ``Authorization: Bearer`` (Pub/Sub push, Cloud Tasks, Cloud
  Scheduler), checked against the cached JWKS, ``aud``, ``email`` and ``email_verified``.
- ``platform``: the platform authenticates invocations before they reach reaper; accepted as is.

Every refusal is a ``BadEventError`` (401) naming what each method missed; a JWKS that cannot be
fetched is a ``RetryableError`` (503: the source delivers again). Libraries are imported only for the
methods configured, so cold start pays for nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from function.errors import BadEventError, RetryableError
from function.secret import Secret
from function.settings import Settings
from function.state import MemoryStore, StateStore

if TYPE_CHECKING:
    import jwt
    import standardwebhooks

WEBHOOK_TOLERANCE: Final = 300.0
_QSTASH_LEEWAY: Final = 5.0
_GOOGLE_ISSUERS: Final = ("https://accounts.google.com", "accounts.google.com")
_JWKS_LIFESPAN: Final = 3600


class Method(Protocol):
    """One way of authenticating a request."""

    name: str

    def check(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """None when this method accepts the request; else why not. May claim a replay key."""

    def release(self, headers: Mapping[str, str]) -> None:
        """Undo a replay claim: the request failed transiently and will be delivered again."""


class PlatformMethod:
    """The platform in front (FunctionGraph trigger, Cloud Run IAM, cluster-local) authenticated it."""

    name = "platform"

    def check(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """Always accepts: the deployment said its platform checks every invocation."""
        return None

    def release(self, headers: Mapping[str, str]) -> None:
        """Nothing was claimed."""


class WebhookMethod:
    """Standard Webhooks, verified with the ``standardwebhooks`` library, plus a replay cache."""

    name = "webhook"

    def __init__(self, secret: Secret, seen: StateStore) -> None:
        from standardwebhooks.webhooks import Webhook

        self._webhook: standardwebhooks.Webhook = Webhook(secret.reveal())
        self._seen = seen

    def check(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """Accept a valid signature over this body whose id was not seen inside the window."""
        from standardwebhooks.webhooks import WebhookVerificationError

        if "webhook-signature" not in headers:
            return "no webhook-signature header"
        try:
            self._webhook.verify(body, dict(headers), json_parse=False)
        except (WebhookVerificationError, ValueError, TypeError):
            # The library raises ValueError / binascii.Error on malformed headers and bodies.
            return "webhook signature invalid or outside the 5-minute window"
        if not self._seen.claim("webhook:" + headers["webhook-id"], 2 * WEBHOOK_TOLERANCE):
            return "webhook-id already used (replay)"
        return None

    def release(self, headers: Mapping[str, str]) -> None:
        """Let the sender's redelivery (same webhook-id) through."""
        if "webhook-id" in headers:
            self._seen.release("webhook:" + headers["webhook-id"])


class QStashMethod:
    """Upstash-Signature: HS256 JWT over the body, current then next signing key, one use per ``jti``."""

    name = "qstash"

    def __init__(self, url: str, keys: list[Secret], seen: StateStore) -> None:
        import jwt

        self._jwt = jwt
        self._url = url
        self._keys = keys
        self._seen = seen

    def claims(self, signature: str, body: bytes) -> dict[str, Any] | str:
        """The verified claims, or why the signature is refused."""
        expected = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("=")
        for key in self._keys:
            try:
                claims: dict[str, Any] = self._jwt.decode(
                    signature,
                    key.reveal(),
                    algorithms=["HS256"],
                    issuer="Upstash",
                    leeway=_QSTASH_LEEWAY,
                    options={"require": ["iss", "sub", "exp", "nbf", "body"], "verify_aud": False},
                )
            except self._jwt.InvalidTokenError:
                continue
            if claims["sub"] != self._url:
                return "Upstash-Signature is for another URL"
            if str(claims["body"]).rstrip("=") != expected:
                return "Upstash-Signature does not match the body"
            return claims
        return "invalid Upstash-Signature"

    def check(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """Accept a valid Upstash-Signature whose ``jti`` was not used before."""
        signature = headers.get("upstash-signature")
        if not signature:
            return "no Upstash-Signature header"
        claims = self.claims(signature, body)
        if isinstance(claims, str):
            return claims
        jti = claims.get("jti")
        if jti is not None:
            ttl = max(float(claims["exp"]) - time.time(), 0.0) + _QSTASH_LEEWAY
            if not self._seen.claim(f"qstash:{jti}", ttl):
                return "Upstash-Signature already used (replay)"
        return None

    def release(self, headers: Mapping[str, str]) -> None:
        """Let a redelivery with the same token through (QStash normally signs each attempt anew)."""
        signature = headers.get("upstash-signature")
        if not signature:
            return
        try:
            unverified = self._jwt.decode(signature, options={"verify_signature": False})
        except self._jwt.InvalidTokenError:
            return
        if unverified.get("jti") is not None:
            self._seen.release(f"qstash:{unverified['jti']}")


class OidcMethod:
    """A Google-signed ID token: JWKS signature, audience, issuer, allowed and verified e-mail."""

    name = "oidc"

    def __init__(self, jwks_url: str, audience: str, emails: frozenset[str]) -> None:
        import jwt

        self._jwt = jwt
        self._jwks: jwt.PyJWKClient = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=_JWKS_LIFESPAN)
        self._audience = audience
        self._emails = emails

    def check(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """Accept a valid ID token of an allowed service account."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "no Authorization: Bearer token"
        token = token.strip()
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
        except self._jwt.PyJWKClientConnectionError:
            raise RetryableError("the OIDC key set could not be fetched") from None
        except (self._jwt.PyJWKClientError, self._jwt.InvalidTokenError):
            return "ID token signed by an unknown key"
        try:
            claims: dict[str, Any] = self._jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self._audience,
                issuer=_GOOGLE_ISSUERS,
                options={"require": ["iss", "aud", "exp", "iat"]},
            )
        except self._jwt.InvalidTokenError as exc:
            return f"ID token refused ({type(exc).__name__})"
        if claims.get("email") not in self._emails:
            return "ID token e-mail is not in REAPER_OIDC_ALLOWED_EMAILS"
        if claims.get("email_verified") is not True:
            return "ID token e-mail is not verified"
        return None

    def release(self, headers: Mapping[str, str]) -> None:
        """ID tokens are bearer tokens reused until they expire: nothing was claimed."""


def methods_from(settings: Settings, seen: StateStore | None = None) -> list[Method]:
    """The configured methods, in the order listed in ``REAPER_INBOUND_AUTH``."""
    seen = seen if seen is not None else MemoryStore()
    methods: list[Method] = []
    for name in settings.inbound_auth:
        if name == "platform":
            methods.append(PlatformMethod())
        elif name == "webhook":
            assert settings.webhook_secret is not None
            methods.append(WebhookMethod(settings.webhook_secret, seen))
        elif name == "qstash":
            keys = [k for k in (settings.qstash_current_signing_key, settings.qstash_next_signing_key) if k]
            methods.append(QStashMethod(settings.self_url, keys, seen))
        elif name == "oidc":
            audience = settings.oidc_audience or settings.self_url
            methods.append(OidcMethod(settings.oidc_jwks_url, audience, settings.oidc_allowed_emails))
    return methods


class Authenticator:
    """Tries the configured methods in order; the first that accepts wins."""

    def __init__(self, methods: list[Method]) -> None:
        self._methods = methods

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> str:
        """The name of the method that accepted the request; ``BadEventError`` (401) when none did."""
        lowered = {k.lower(): v for k, v in headers.items()}
        reasons = []
        for method in self._methods:
            refusal = method.check(lowered, body)
            if refusal is None:
                return method.name
            reasons.append(f"{method.name}: {refusal}")
        raise BadEventError("not authenticated (" + "; ".join(reasons) + ")", status=401)

    def release(self, headers: Mapping[str, str]) -> None:
        """Undo replay claims for a request that is answered 5xx (its source delivers it again)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        for method in self._methods:
            method.release(lowered)


class Caller:
    """One request's credentials, checked at most once and only when an external event needs them."""

    def __init__(self, authenticator: Authenticator, headers: Mapping[str, str], body: bytes) -> None:
        self._authenticator = authenticator
        self._headers = headers
        self._body = body
        self._accepted: str | None = None

    def authenticate(self) -> str:
        """The accepting method's name; raises ``BadEventError`` (401) otherwise."""
        if self._accepted is None:
            self._accepted = self._authenticator.authenticate(self._headers, self._body)
        return self._accepted

    def release(self) -> None:
        """Undo replay claims made for this request (it is answered 5xx)."""
        if self._accepted is not None:
            self._authenticator.release(self._headers)
