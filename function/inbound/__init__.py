"""What comes in, and who may send it: parsing, envelopes, and authentication of triggers.

- ``events``: one request -> one validated ``InboundEvent`` (binary or structured CloudEvents);
- ``envelopes``: Pub/Sub push, FunctionGraph timer and DMS records, plain JSON webhooks -> events;
- ``auth``: the methods of ``REAPER_INBOUND_AUTH`` that authenticate external events; a signed request's id
  is claimed in the state store (``function.state``) so a captured request works once, fleet-wide;
- ``strictjson``: one meaning per JSON document (no duplicate keys, bounded depth).

Internal follow-ups are authenticated by their own HMAC signature (``function.signing``).
"""

from function.inbound.events import InboundEvent, check_request, from_cloudevent, from_request

__all__ = ["InboundEvent", "check_request", "from_cloudevent", "from_request"]
