"""Operator tools shipped with the image: send a test event, explain a log."""
