"""Fault injection of the local SendGrid sink (`shopmail.devtools.sendgrid_sink`).

`Faults` is an immutable configuration: per-request probabilities of a 429, 500, 503, a hung
request (answered 503 after `timeout_s`), a dropped connection (nothing stored), an accepted mail
whose connection is then dropped without an answer (`accept_drop`) or whose answer comes only after
`timeout_s` (`accept_stall`): the two faults that leave a client in doubt; plus latency and the 429
reset delay. One random draw per `/v3/mail/send` request picks at most one fault, so the rates
must add up to at most 1. `SinkServer`, `stall` and `drop_connection` are the server-side
mechanics of the timeout and drop faults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

# The kinds a random draw can pick, in the order their probability ranges are laid out.
FAULT_KINDS = ("429", "500", "503", "timeout", "drop", "accept_drop", "accept_stall")
ACCEPT_FAULTS = frozenset({"accept_drop", "accept_stall"})  # the mail is stored, the answer lost
_RATE_FIELDS = tuple(f"rate_{kind}" for kind in FAULT_KINDS)


@dataclass(frozen=True, slots=True)
class Faults:
    """Injected failures; all off by default.

    `rate_*`: probability per request; `timeout_s`: how long a `timeout` fault stalls before
    answering 503 (longer than a client's timeout); `slow_ms`: extra latency of every API
    request (before it is read); `answer_delay_ms`: a mail send's answer comes this long after the
    mail was stored; `retry_after_s`: a 429's `X-RateLimit-Reset` is now + this (epoch seconds);
    `seed`: makes the draws reproducible (None: a fresh random sequence).
    """

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_timeout: float = 0.0
    rate_drop: float = 0.0
    rate_accept_drop: float = 0.0
    rate_accept_stall: float = 0.0
    timeout_s: float = 35.0
    slow_ms: float = 0.0
    answer_delay_ms: float = 0.0
    retry_after_s: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in _RATE_FIELDS:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if sum(self.rates) > 1.0 + 1e-9:
            raise ValueError("the fault rates must add up to at most 1")
        for name in ("timeout_s", "slow_ms", "answer_delay_ms", "retry_after_s"):
            if not 0.0 <= getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0")

    @property
    def rates(self) -> tuple[float, ...]:
        """The probabilities in `FAULT_KINDS` order."""
        return tuple(getattr(self, name) for name in _RATE_FIELDS)

    def pick(self, draw: float) -> str | None:
        """The fault kind for a uniform draw in [0, 1), or None for normal service."""
        upper = 0.0
        for kind, rate in zip(FAULT_KINDS, self.rates, strict=True):
            upper += rate
            if draw < upper:
                return kind
        return None

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any, base: Faults | None = None) -> Faults:
        """Build from a JSON object, starting from `base` (default: no faults).

        Raises ValueError on unknown fields, wrong types or out-of-range values.
        """
        if not isinstance(data, Mapping):
            raise ValueError("expected a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(unknown)}")
        for name, value in data.items():
            if name == "seed":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ValueError("seed must be an integer or null")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number")
        return dataclasses.replace(base if base is not None else cls(), **data)


def add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    """`--rate-429 ... --rate-drop`, `--timeout-s`, `--slow-ms`, `--retry-after-s`, `--seed`."""
    defaults = Faults()
    for kind in FAULT_KINDS:
        flag = "--rate-" + kind.replace("_", "-")
        parser.add_argument(flag, type=float, default=0.0, help=f"probability of a {kind} fault")
    parser.add_argument("--timeout-s", type=float, default=defaults.timeout_s, help="stall of a timeout")
    parser.add_argument("--slow-ms", type=float, default=0.0, help="extra latency of every API request")
    parser.add_argument(
        "--answer-delay-ms", type=float, default=0.0, help="a send's answer lags the stored mail by this"
    )
    parser.add_argument(
        "--retry-after-s", type=float, default=defaults.retry_after_s, help="429 X-RateLimit-Reset delay"
    )
    parser.add_argument("--seed", type=int, default=None, help="make the fault draws reproducible")


def faults_from_args(args: argparse.Namespace) -> Faults:
    """The `Faults` of parsed `add_fault_arguments` flags; ValueError when out of range."""
    return Faults(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Faults)})


class SinkServer(uvicorn.Server):
    """uvicorn serving a sink app: lets the app drop connections and wakes stalled requests
    (timeout faults) as soon as shutdown begins."""

    def __init__(self, app: Starlette, **config: Any) -> None:
        config = {"lifespan": "off", "timeout_graceful_shutdown": 2, **config}
        super().__init__(uvicorn.Config(app, **config))
        self.stopping = asyncio.Event()
        app.state.server = self

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.stopping.set()
        await super().shutdown(sockets)


async def stall(request: Request, seconds: float) -> None:
    """Sleep `seconds`, or less if the server shuts down meanwhile."""
    server = getattr(request.app.state, "server", None)
    stopping = server.stopping if isinstance(server, SinkServer) else asyncio.Event()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


async def drop_connection(request: Request) -> Response:
    """Close the request's TCP connection without any HTTP response.

    ASGI has no way to say this, so the sink's `SinkServer` finds the uvicorn connection of this
    request by client address and closes its transport; the returned response goes nowhere.
    """
    server = getattr(request.app.state, "server", None)
    client = tuple(request.scope.get("client") or ())
    connections = list(server.server_state.connections) if isinstance(server, SinkServer) else []
    for connection in connections:
        transport = getattr(connection, "transport", None)
        if client and tuple(getattr(connection, "client", None) or ()) == client and transport:
            transport.close()
            await asyncio.sleep(0)  # uvicorn marks the cycle disconnected and sends nothing
            return Response(status_code=500)
    raise RuntimeError("dropping a connection needs the sink's SinkServer")
