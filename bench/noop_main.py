"""A CloudEvent function that does nothing: the floor of the server's own cost."""

import functions_framework
from cloudevents.http import CloudEvent


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    """Accept the event and return."""
