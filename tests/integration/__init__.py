"""Tests through real parts: functions-framework processes, the emulator over HTTP, RabbitMQ, subprocesses."""
