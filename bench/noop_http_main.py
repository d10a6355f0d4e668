"""An HTTP function that does nothing: the floor of a Flask request, without even reading a CloudEvent."""

import flask
import functions_framework


@functions_framework.http
def handle(request: flask.Request) -> str:
    """Answer and return."""
    return "OK"
