"""Run the emulator on its own: ``python -m kizuna.emulator --port 8081 ...``."""

from __future__ import annotations

import argparse
import gc
import logging
import os

from aiohttp import web

from .core import Emulator
from .faults import FaultRates


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kizuna.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--channel-secret", default=os.environ.get("LINE_CHANNEL_SECRET", "emulator-secret"))
    parser.add_argument("--access-token", default=os.environ.get("LINE_CHANNEL_ACCESS_TOKEN", "emulator-token"))
    parser.add_argument("--webhook-url", default=None, help="where to POST webhook events")
    parser.add_argument("--bot-user-id", default=None)
    parser.add_argument("--login-channel-id", default=os.environ.get("LINE_LOGIN_CHANNEL_ID", "2000000000"))
    parser.add_argument("--login-channel-secret", default=os.environ.get("LINE_LOGIN_CHANNEL_SECRET", "emulator-login-channel-secret"))
    parser.add_argument("--quota", type=int, default=None, help="monthly message quota (default: none)")
    parser.add_argument("--reply-token-ttl", type=float, default=60.0)
    parser.add_argument("--webhook-timeout", type=float, default=2.0, help="seconds the bot has to answer")
    parser.add_argument(
        "--request-log-limit", type=int, default=100_000,
        help="keep at most this many API requests in memory (long benchmark runs)",
    )
    parser.add_argument(
        "--faults", action="append", default=[], metavar="ENDPOINT=BEFORE,AFTER,429",
        help="random faults for an endpoint ('*' for all): shares answered 500 before executing, "
             "500 after executing (lost acknowledgement) and 429, e.g. multicast=0.05,0.05,0.02",
    )
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the random faults (repeatable runs)")
    parser.add_argument(
        "--rate-limit", action="append", default=[], metavar="ENDPOINT=PER_SECOND",
        help="override one endpoint's rate limit, e.g. multicast=1000",
    )
    parser.add_argument("--no-rate-limits", action="store_true", help="lift every rate limit (a sender's own ceiling)")
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


def parse_faults(spec: str) -> tuple[str, FaultRates]:
    endpoint, _, numbers = spec.partition("=")
    parts = [float(x) for x in numbers.split(",")] if numbers else []
    if not endpoint or len(parts) != 3:
        raise SystemExit(f"--faults expects ENDPOINT=BEFORE,AFTER,429, got {spec!r}")
    return endpoint, FaultRates(*parts)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    gc.set_threshold(10_000, *gc.get_threshold()[1:])  # young collections rarer: fewer requests promoted
    logging.basicConfig(level=args.log_level.upper())
    emu = Emulator(
        channel_secret=args.channel_secret,
        access_token=args.access_token,
        webhook_url=args.webhook_url,
        bot_user_id=args.bot_user_id,
        reply_token_ttl=args.reply_token_ttl,
        webhook_timeout=args.webhook_timeout,
        login_channel_id=args.login_channel_id,
        login_channel_secret=args.login_channel_secret,
    )
    emu.quota_limit = args.quota
    emu.request_log_limit = args.request_log_limit
    emu.faults.seed = args.fault_seed
    for spec in args.faults:
        emu.faults.set_rates(*parse_faults(spec))
    for spec in args.rate_limit:
        name, _, per_second = spec.partition("=")
        emu.set_rate_limit(name, float(per_second))
    emu.rate_limiter.unlimited = args.no_rate_limits

    def ready(_message: str) -> None:
        # What the start made stays out of the collector's walks (as kizuna/bot/collector.py
        # does for Kizuna's processes: full collections stalled the emulator for up to 1.6 s at
        # 2,000 pushes/s in bench/campaign_send.py).
        gc.collect()
        gc.freeze()
        # Printed once the port is listening: scripts and tests wait for this line.
        print(f"LINE emulator ready: http://{args.host}:{args.port}/ (Messaging API at /v2/bot/...)", flush=True)

    web.run_app(emu.create_app(), host=args.host, port=args.port, print=ready, access_log=None)


if __name__ == "__main__":
    main()
