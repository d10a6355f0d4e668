"""The one ``reaper`` command: the function (``serve``), its companions, the operator and developer tools."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import httpx

from function import jsonlog


def _exit_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def _emulator(args: argparse.Namespace) -> int:
    from reaper.devtools.emulator.app import create_app
    from reaper.devtools.emulator.fleet import Config, Fleet
    from reaper.servers import serve_forever

    specs = json.loads(Path(args.instances).read_text(encoding="utf-8")) if args.instances else []

    def factory() -> object:
        config = Config(
            termination_seconds=args.termination_seconds,
            latency=args.latency,
            token=args.token,
            retention_seconds=args.retention_seconds,
            token_ttl=args.token_ttl,
            metadata_key_ttl=args.metadata_key_ttl,
            iam_password=args.iam_password,
        )
        fleet = Fleet(config)
        if args.ak and args.sk:
            fleet.keys.add_static(args.ak, args.sk)
        for number in range(1, args.seed + 1):
            fleet.add({"id": f"i-{number:04d}", "project_id": args.project})
        for spec in specs:
            fleet.add(spec)
        return create_app(fleet)

    print(f"clouddc emulator on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    serve_forever(factory, args.host, args.port, threads=args.threads)
    return 0


def _delay_service(args: argparse.Namespace) -> int:
    from reaper.companions.delay import serve

    allowed = tuple(args.allow_target or [os.environ.get("REAPER_SELF_URL") or "http://127.0.0.1:8080/"])
    serve(args.host, args.port, args.db, allowed, threads=args.threads)
    return 0


def _rabbitmq_relay(args: argparse.Namespace) -> int:
    from function.secret import Secret
    from reaper.companions.rabbitmq_relay import Relay

    relay = Relay(Secret(args.url), args.queue, args.target, prefetch=args.prefetch)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        relay.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    relay.run()
    return 0


def _serve(args: argparse.Namespace) -> int:
    from function.serve import serve

    serve(args.source, args.target, args.signature_type, args.host, args.port)
    return 0


def _send(args: argparse.Namespace) -> int:
    from reaper.tools.send import send

    secrets = {"webhook": "REAPER_WEBHOOK_SECRET", "qstash": "QSTASH_CURRENT_SIGNING_KEY"}
    secret = args.secret or os.environ.get(secrets.get(args.auth, ""))
    instance = None if args.sweep else args.instance
    return send(args.url, args.shape, instance, args.project, auth=args.auth, secret=secret)


def _demo(args: argparse.Namespace) -> int:
    from reaper.devtools.demo import run_demo

    return run_demo(
        instances=args.instances, timeout=args.timeout, termination_seconds=args.termination_seconds
    )


def _explain(args: argparse.Namespace) -> int:
    from reaper.tools.explain import explain

    if not args.logs:
        return explain([sys.stdin], sys.stdout, args.instance)
    with contextlib.ExitStack() as files:
        sources = [files.enter_context(open(path, encoding="utf-8", errors="replace")) for path in args.logs]
        return explain(sources, sys.stdout, args.instance)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="reaper", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    emulator = commands.add_parser("emulator", help="run the CloudDC emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8088)
    emulator.add_argument("--termination-seconds", type=float, default=5.0)
    emulator.add_argument("--retention-seconds", type=float, default=30.0)
    emulator.add_argument("--latency", type=float, default=0.0, help="seconds added to each API call")
    emulator.add_argument("--token", default=None, help="the only token accepted (default: any)")
    emulator.add_argument(
        "--token-ttl", type=float, default=24 * 3600.0, help="lifetime of issued IAM tokens, s"
    )
    emulator.add_argument(
        "--iam-password", default=None, help="the only IAM password accepted (default: any)"
    )
    emulator.add_argument("--ak", default=None, help="an AK accepted for signed requests (with --sk)")
    emulator.add_argument("--sk", default=None, help="the SK of --ak")
    emulator.add_argument(
        "--metadata-key-ttl", type=float, default=900.0, help="lifetime of metadata keys, s"
    )
    emulator.add_argument("--seed", type=int, default=0, help="create N running instances")
    emulator.add_argument("--project", default="demo-project")
    emulator.add_argument("--instances", default=None, help="JSON file with instance specs")
    emulator.add_argument("--threads", type=int, default=128, help="concurrent requests served")
    emulator.set_defaults(run=_emulator)

    from function.serve import DEFAULT_SOURCE

    server = commands.add_parser("serve", help="serve the function (gunicorn with reaper's limits)")
    server.add_argument("--source", default=os.environ.get("FUNCTION_SOURCE", str(DEFAULT_SOURCE)))
    server.add_argument("--target", default=os.environ.get("FUNCTION_TARGET", "handle_http"))
    signature = os.environ.get("FUNCTION_SIGNATURE_TYPE", "http")
    server.add_argument("--signature-type", default=signature, choices=("http", "cloudevent"))
    server.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))  # noqa: S104 - a container's port
    server.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    server.set_defaults(run=_serve)

    delay = commands.add_parser("delay-service", help="run the local delay service")
    delay.add_argument("--host", default="127.0.0.1")
    delay.add_argument("--port", type=int, default=8089)
    delay.add_argument("--db", default="reaper-delays.sqlite3")
    delay.add_argument("--threads", type=int, default=32, help="concurrent requests served")
    delay.add_argument(
        "--allow-target",
        action="append",
        help="a URL events may be delivered to (repeatable; ':*' as port = any port on that host); "
        "default: REAPER_SELF_URL",
    )
    delay.set_defaults(run=_delay_service)

    relay = commands.add_parser("rabbitmq-relay", help="consume the input queue, POST to the function")
    relay.add_argument("--target", required=True, help="the function's URL")
    relay.add_argument(
        "--url",
        default=os.environ.get("REAPER_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        help="broker URL (default: $REAPER_RABBITMQ_URL or the local broker)",
    )
    relay.add_argument("--queue", default=os.environ.get("REAPER_RABBITMQ_QUEUE", "reaper.events"))
    relay.add_argument("--prefetch", type=int, default=16)
    relay.set_defaults(run=_rabbitmq_relay)

    from reaper.tools.send import AUTH_METHODS, SHAPES

    sender = commands.add_parser("send", help="fire an instance-expired or sweep event at a URL")
    sender.add_argument("url")
    target = sender.add_mutually_exclusive_group(required=True)
    target.add_argument("--instance", help="the expired instance's id")
    target.add_argument("--sweep", action="store_true", help="send an instance-sweep instead")
    sender.add_argument("--project", default=os.environ.get("CLOUDDC_PROJECT_ID"))
    sender.add_argument("--as", dest="shape", choices=SHAPES, default="binary")
    sender.add_argument(
        "--auth",
        choices=AUTH_METHODS,
        default=_default_send_auth(),
        help="how to authenticate (default: the first of REAPER_INBOUND_AUTH that reaper send can produce)",
    )
    sender.add_argument(
        "--secret", default=None, help="webhook secret or QStash signing key (default: from env)"
    )
    sender.set_defaults(run=_send)

    demo = commands.add_parser("demo", help="emulator + delay service + function, end to end")
    demo.add_argument("--instances", type=int, default=10)
    demo.add_argument("--timeout", type=float, default=120.0)
    demo.add_argument("--termination-seconds", type=float, default=6.0, help="how long a plain delete takes")
    demo.set_defaults(run=_demo)

    explainer = commands.add_parser("explain", help="one timeline per instance from reaper's JSON log lines")
    explainer.add_argument("logs", nargs="*", help="log files (default: stdin)")
    explainer.add_argument("--instance", default=None, help="only this instance")
    explainer.set_defaults(run=_explain)
    return parser


def _default_send_auth() -> str:
    from reaper.tools.send import AUTH_METHODS

    listed = [m.strip().lower() for m in os.environ.get("REAPER_INBOUND_AUTH", "").split(",")]
    return next((m for m in listed if m in AUTH_METHODS), "platform")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``reaper`` console script."""
    args = build_parser().parse_args(argv)
    jsonlog.configure()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("reaper.devtools"):
            raise
        # The production image ships the function and its companions, not the developer tools.
        print(
            f"reaper {args.command}: a developer tool, not in this install; run it from a checkout",
            file=sys.stderr,
        )
        return 2
    except (OSError, ValueError, httpx.HTTPError) as exc:
        print(f"reaper {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
