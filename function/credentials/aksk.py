"""AK/SK request signing (Huawei API Gateway ``SDK-HMAC-SHA256``), and the static AK/SK source.

The canonical request, as Huawei's SDK (``huaweicloudsdkcore.signer.Signer``) builds it:

    METHOD \\n canonical-uri \\n canonical-query \\n canonical-headers \\n signed-headers \\n sha256(body)

- canonical-uri: each path segment percent-encoded (only ``~`` and unreserved kept), always ending in ``/``;
- canonical-query: ``key=value`` pairs, encoded the same way, sorted;
- canonical-headers: ``name:value`` lines, names lower-cased and sorted, values trimmed;
- string to sign: ``SDK-HMAC-SHA256 \\n <X-Sdk-Date> \\n sha256(canonical request)``; the signature is
  its hex HMAC-SHA256 under the SK, sent as
  ``Authorization: SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<names>, Signature=<hex>``.

reaper signs ``host``, ``x-sdk-date``, ``content-type`` when present, ``x-project-id`` and
``x-security-token`` (temporary keys): the headers that mean something, not hop-by-hop ones a proxy
may rewrite. ``tests/integration/test_credentials.py`` proves the result equal to the SDK's on
generated requests; the runtime never imports the SDK.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, unquote

from function.secret import Secret

if TYPE_CHECKING:
    from function.outbound.endpoint import Call

ALGORITHM: Final = "SDK-HMAC-SHA256"
DATE_FORMAT: Final = "%Y%m%dT%H%M%SZ"
_EMPTY_HASH: Final = hashlib.sha256(b"").hexdigest()
SIGNED: Final = ("content-type", "host", "x-project-id", "x-sdk-date", "x-security-token")


def _encode(text: str) -> str:
    return quote(text, safe="~")


def canonical_uri(path: str) -> str:
    """The path, each segment encoded, with a trailing slash."""
    encoded = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def canonical_query(pairs: Sequence[tuple[str, str]]) -> str:
    """The query pairs, encoded and sorted."""
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(pairs))


def canonical_request(
    method: str, path: str, query: Sequence[tuple[str, str]], headers: Mapping[str, str], body: bytes
) -> tuple[str, list[str]]:
    """The canonical request and the (sorted, lower-case) names of the headers it signs."""
    lowered = {k.lower(): str(v).strip() for k, v in headers.items() if "_" not in k}
    names = sorted(lowered)
    header_lines = "".join(f"{name}:{lowered[name]}\n" for name in names)
    payload = hashlib.sha256(body).hexdigest() if body else _EMPTY_HASH
    text = "\n".join(
        (method.upper(), canonical_uri(path), canonical_query(query), header_lines, ";".join(names), payload)
    )
    return text, names


def authorization(
    ak: str,
    sk: str,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
) -> str:
    """The ``Authorization`` value for a request whose signed ``headers`` include ``X-Sdk-Date``."""
    date = next(v for k, v in headers.items() if k.lower() == "x-sdk-date")
    text, names = canonical_request(method, path, query, headers, body)
    to_sign = f"{ALGORITHM}\n{date}\n{hashlib.sha256(text.encode()).hexdigest()}"
    signature = hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{ALGORITHM} Access={ak}, SignedHeaders={';'.join(names)}, Signature={signature}"


def sign_request(
    request: Call,
    ak: Secret,
    sk: Secret,
    *,
    security_token: Secret | None = None,
    project_id: str | None = None,
    now: datetime | None = None,
) -> None:
    """Add ``X-Sdk-Date``, ``Authorization`` (and ``X-Security-Token``, ``X-Project-Id``) to ``request``."""
    request.headers["X-Sdk-Date"] = (now or datetime.now(UTC)).strftime(DATE_FORMAT)
    if security_token is not None:
        request.headers["X-Security-Token"] = security_token.reveal()
    if project_id:
        request.headers["X-Project-Id"] = project_id
    signed = {k: v for k, v in request.headers.items() if k.lower() in SIGNED}
    signed.setdefault("host", request.host)
    request.headers["Authorization"] = authorization(
        ak.reveal(),
        sk.reveal(),
        request.method,
        request.path,  # as sent; canonical_uri decodes it once
        list(request.query),
        signed,
        request.content,
    )


class AkSkCredentials:
    """A fixed AK/SK pair (``HUAWEICLOUD_SDK_AK`` / ``_SK``, optional security token): each call signed."""

    name = "aksk"

    def __init__(self, ak: Secret, sk: Secret, security_token: Secret | None, project_id: str | None) -> None:
        self._ak, self._sk, self._security_token, self._project_id = ak, sk, security_token, project_id

    def apply(self, request: Call) -> None:
        """Sign ``request``."""
        sign_request(
            request, self._ak, self._sk, security_token=self._security_token, project_id=self._project_id
        )

    def reload(self) -> None:
        """A fixed key pair cannot be refreshed: a 401 stands."""

    def __repr__(self) -> str:
        return "AkSkCredentials(***)"
