"""HMAC signatures of reaper's own events (design §7): a follow-up is trusted only if reaper signed it.

The signature rides in the CloudEvents extension attribute ``reapersignature`` as ``v1=<hex>``, the
HMAC-SHA256 (key ``REAPER_EVENT_KEY``) of the event's type, id, subject and canonical JSON data, each
on its own line. It survives every transport and envelope (binary ``ce-reapersignature`` header,
structured JSON, Pub/Sub or DMS bodies) because it covers what the event says, not how it travelled.
``REAPER_EVENT_KEY_PREVIOUS`` is also accepted, so the key can be rotated without losing chains.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Final

from cloudevents.http import CloudEvent

from function.errors import BadEventError
from function.secret import Secret

EXTENSION: Final = "reapersignature"
_VERSION: Final = "v1="
# Built once (json.dumps with arguments builds an encoder per call): every follow-up is signed.
_canonical_json: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
).encode


def canonical(event_type: str, event_id: str, subject: str | None, data: Any) -> bytes:
    """The bytes a signature covers: type, id, subject and data in one unambiguous form."""
    body = _canonical_json(data)
    return "\n".join((event_type, event_id, subject or "", body)).encode()


class EventSigner:
    """Signs outgoing follow-ups and verifies incoming ones."""

    def __init__(self, key: Secret, previous: Secret | None = None) -> None:
        self._keys = tuple(k.reveal().encode() for k in (key, previous) if k is not None)

    def signature(self, event_type: str, event_id: str, subject: str | None, data: Any) -> str:
        """The extension value for an event with these attributes and data."""
        return _VERSION + self._mac(self._keys[0], canonical(event_type, event_id, subject, data))

    def sign(self, event: CloudEvent) -> None:
        """Add the signature extension to ``event`` in place."""
        subject = event.get("subject")
        event[EXTENSION] = self.signature(
            str(event["type"]), str(event["id"]), str(subject) if subject else None, event.get_data()
        )

    def verify(
        self, event_type: str, event_id: str, subject: str | None, data: Any, signature: str | None
    ) -> None:
        """Raise ``BadEventError`` (401) unless ``signature`` is ours for exactly this event."""
        if not signature:
            raise BadEventError(f"{event_type} is an internal event and carries no {EXTENSION}", status=401)
        if not signature.startswith(_VERSION):
            raise BadEventError(f"{EXTENSION} is not a v1 signature", status=401)
        try:
            message = canonical(event_type, event_id, subject, data)
        except ValueError:
            raise BadEventError(f"{EXTENSION} does not match the event", status=401) from None
        given = signature.removeprefix(_VERSION).encode("utf-8", "replace")
        if any(hmac.compare_digest(self._mac(key, message).encode(), given) for key in self._keys):
            return
        raise BadEventError(f"{EXTENSION} does not match the event", status=401)

    @staticmethod
    def _mac(key: bytes, message: bytes) -> str:
        # hmac.digest: OpenSSL's one-shot HMAC, without the Python-level HMAC object hmac.new builds.
        return hmac.digest(key, message, "sha256").hex()

    def __repr__(self) -> str:
        return f"EventSigner(keys={len(self._keys)})"
