"""Where CloudDC credentials come from (design §7a): a chain behind one interface, first configured wins.

1. a fixed token: ``CLOUDDC_AUTH_TOKEN`` / ``CLOUDDC_AUTH_TOKEN_FILE`` (``token``);
2. an IAM token reaper fetches and refreshes: ``CLOUDDC_IAM_*`` password, project-scoped (``iam``);
3. AK/SK request signing: ``HUAWEICLOUD_SDK_AK`` / ``_SK``, optional ``_SECURITY_TOKEN`` (``aksk``);
4. the ECS/BMS metadata security key, refreshed: ``HUAWEICLOUD_CREDENTIALS_FROM_METADATA=true``.

With ``REAPER_TOKEN_FROM_REQUEST=true`` the credentials FunctionGraph passes with each request come
first, the chain's source as the fallback (``request``). Every source answers ``apply(request)`` and
``reload()`` (after a 401); only the source's name is ever logged.
"""

from __future__ import annotations

from function.credentials.aksk import AkSkCredentials
from function.credentials.request import Credentials, RequestScoped, request_credentials
from function.credentials.token import TokenSource
from function.settings import Settings

__all__ = ["Credentials", "TokenSource", "from_settings", "request_credentials"]


def from_settings(settings: Settings) -> Credentials:
    """The first configured source of the chain, wrapped for per-request credentials when asked."""
    chosen: Credentials | None = None
    if settings.auth_token is not None or settings.auth_token_file is not None:
        chosen = TokenSource(settings.auth_token, settings.auth_token_file)
    elif settings.iam_password is not None:
        assert settings.iam_endpoint is not None
        assert settings.iam_domain is not None
        assert settings.iam_user is not None
        assert settings.project_id is not None  # all checked by Settings
        from function.credentials.iam import IamTokenSource  # only its users pay for importing it

        chosen = IamTokenSource(
            settings.iam_endpoint,
            settings.iam_domain,
            settings.iam_user,
            settings.iam_password,
            settings.project_id,
            timeout=settings.http_timeout,
            deadline=settings.http_deadline,
        )
    elif settings.sdk_ak is not None and settings.sdk_sk is not None:
        chosen = AkSkCredentials(
            settings.sdk_ak, settings.sdk_sk, settings.sdk_security_token, settings.project_id
        )
    elif settings.credentials_from_metadata:
        from function.credentials.metadata import MetadataKeys

        chosen = MetadataKeys(
            settings.metadata_url,
            settings.project_id,
            timeout=settings.http_timeout,
            deadline=settings.http_deadline,
        )
    if settings.token_from_request:
        return RequestScoped(chosen)
    assert chosen is not None  # Settings refuses to start without a source
    return chosen
