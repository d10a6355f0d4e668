"""Delay transports (design §6): one interface, ``schedule(event, delay, dedup_key)``, at-least-once."""

from __future__ import annotations

from typing import Protocol

from cloudevents.http import CloudEvent

from function.settings import Settings


class Scheduler(Protocol):
    """Delivers ``event`` back to the function after ``delay`` seconds; raises ``HandOffError``."""

    def schedule(self, event: CloudEvent, delay: float, dedup_key: str) -> None:
        """Hand the event to the transport; return once it is durably accepted."""

    def close(self) -> None:
        """Release connections."""


def from_settings(settings: Settings) -> Scheduler:
    """The transport named by ``REAPER_SCHEDULER``, imported lazily so cold start pays only for it."""
    if settings.scheduler == "local":
        from function.schedulers.local import LocalScheduler

        return LocalScheduler(
            settings.delay_service_url,
            settings.self_url,
            timeout=settings.http_timeout,
            deadline=settings.http_deadline,
        )
    if settings.scheduler == "cloudtasks":
        from function.schedulers.cloudtasks import CloudTasksScheduler

        assert settings.cloudtasks_queue is not None
        assert settings.cloudtasks_service_account is not None
        return CloudTasksScheduler(
            queue=settings.cloudtasks_queue,
            target_url=settings.self_url,
            service_account=settings.cloudtasks_service_account,
            audience=settings.cloudtasks_audience,
            api_base=settings.cloudtasks_api,
            metadata_host=settings.metadata_host,
            timeout=settings.http_timeout,
            deadline=settings.http_deadline,
        )
    if settings.scheduler == "qstash":
        from function.schedulers.qstash import QStashScheduler

        assert settings.qstash_token is not None
        return QStashScheduler(
            base_url=settings.qstash_url,
            token=settings.qstash_token,
            target_url=settings.self_url,
            timeout=settings.http_timeout,
            deadline=settings.http_deadline,
        )
    from function.schedulers.rabbitmq import RabbitMQScheduler

    return RabbitMQScheduler(
        settings.rabbitmq_url, settings.rabbitmq_queue, declare_queue=settings.rabbitmq_declare_queue
    )
