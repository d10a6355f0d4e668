"""Services that run beside the function in production: the delay service, its store, the RabbitMQ relay."""
