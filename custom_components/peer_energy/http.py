"""HTTP transport of the federation: views on Home Assistant's web server and a client.

Endpoints (specified in ``docs/protocol.md``, section "HTTP transport"):

* ``POST /api/peer_energy/v1/message``: one signed envelope (canonical JSON). Not behind
  Home Assistant's login: every message is authenticated by its Ed25519 signature and the
  sender's membership (a ``join`` by its invitation proof). Answers ``202 {"ok": true}`` when
  accepted, otherwise ``{"error": code, "detail": text}`` with the status of ``STATUS_BY_CODE``.
  A newcomer's valid ``join`` is refused with ``422 address_unreachable`` unless the
  joiner's own key answers the info at the address it asks to be welcomed at.
* ``GET /api/peer_energy/v1/info``: public facts (protocol version, member key, community
  id, member count) used by joiners and by the reachability probe.

Bodies: one that cannot be read (a ``Content-Encoding`` it does not follow, cut short,
broken chunks) gets ``400 bad_body``, one that takes longer than ``BODY_TIMEOUT_S`` gets
``408``, all before the rate limiter (the sender is not known before the body is read).
Our own bug (the link answers ``internal_error``, logged there with its traceback) gets
``500`` without details: the peer is not at fault.

Limits: bodies over ``MAX_BODY_BYTES`` get ``413`` before they are read whole; each
(remote address, claimed member key) pair has a token bucket (``RATE_PER_S`` messages per
second, bursts of ``RATE_BURST``) and gets ``429`` with ``Retry-After`` when it is empty.
Messages whose claimed key is no member's (joins, strangers, forgers inventing keys) share
one smaller bucket per remote address, so inventing keys buys no extra signature checks.

``HttpTransport`` sends through Home Assistant's shared aiohttp session with a timeout per
attempt and a bounded number of attempts with exponential backoff; it never raises. Its
requests carry ``User-Agent: PeerEnergy/1`` (the protocol version), not Home Assistant's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
import re
import time
from typing import Any, Final

from aiohttp import ClientError, ClientTimeout, web
from aiohttp.http_exceptions import HttpProcessingError
from homeassistant.core import HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.http import KEY_HASS, HomeAssistantView

from .const import LOGGER
from .core.federation.protocol import MAX_MESSAGE_BYTES, Reject, Rejected
from .core.trust.envelope import RejectCode
from .federation import FederationLink
from .runtime import async_serving_link, async_serving_runtime

API_PREFIX: Final = "/api/peer_energy/v1"
MESSAGE_PATH: Final = f"{API_PREFIX}/message"
INFO_PATH: Final = f"{API_PREFIX}/info"
ADDRESS_HEADER: Final = "X-Peer-Energy-Address"
MAX_BODY_BYTES: Final = MAX_MESSAGE_BYTES
RATE_PER_S: Final = 20.0
RATE_BURST: Final = 200.0
# Non-members (a claimed key no member holds) share one bucket per remote address.
STRANGER_RATE_PER_S: Final = 2.0
STRANGER_BURST: Final = 20.0
MAX_BUCKETS: Final = 10_000
CONTENT_TYPE: Final = "application/json"
# Outgoing requests name the protocol only, not Home Assistant and its version (the
# session's default User-Agent would tell every member and every address we probe).
USER_AGENT: Final = "PeerEnergy/1"

CODE_INTERNAL_ERROR: Final = "internal_error"
# Reading a body: it must arrive whole within this time (a slow body holds a connection).
BODY_TIMEOUT_S: Final = 10.0

# Status of a message the peer refused, by reject code.
STATUS_BY_CODE: Final[dict[str, int]] = {
    RejectCode.MALFORMED: 400,
    RejectCode.FLOAT_NOT_ALLOWED: 400,
    RejectCode.WRONG_FIELD_TYPE: 400,
    RejectCode.UNKNOWN_VERSION: 400,
    RejectCode.UNKNOWN_TYPE: 400,
    RejectCode.CLOCK_SKEW: 400,
    RejectCode.PAYLOAD_TOO_LARGE: 413,
    RejectCode.OTHER_COMMUNITY: 403,
    RejectCode.UNKNOWN_SENDER: 403,
    RejectCode.BAD_SIGNATURE: 403,
    RejectCode.REPLAY: 409,
    RejectCode.SEQUENCE_OUT_OF_WINDOW: 409,
    Reject.BAD_INVITATION: 403,
    Reject.BAD_PROOF: 403,
    Reject.COMMUNITY_FULL: 409,
    Reject.NOT_JOINED: 503,
    Reject.NOT_A_RECORD: 422,
    Reject.BAD_BID: 422,
    Reject.LATE_BID: 422,
    Reject.STALE_SLOT: 422,
    Reject.OVER_CREDIT_LIMIT: 422,
    Reject.BAD_ATTESTATION: 422,
    Reject.BAD_MEMBERSHIP: 422,
    Reject.BAD_SLOT_DATA: 422,
    Reject.BAD_TRADE: 422,
    # our own bug (the link logged it with its traceback): the peer is not at fault
    CODE_INTERNAL_ERROR: 500,
}
CODE_BODY_TOO_LARGE: Final = "body_too_large"
CODE_BAD_BODY: Final = "bad_body"
CODE_BODY_TIMEOUT: Final = "body_timeout"
CODE_RATE_LIMITED: Final = "rate_limited"
CODE_NO_COMMUNITY: Final = "no_community"
CODE_ADDRESS_UNREACHABLE: Final = "address_unreachable"
# The inviter's check of a joiner's address: well within the joiner's own timeout.
JOIN_PROBE_TIMEOUT_S: Final = 3.0

_SENDER = re.compile(rb'"sender":"([0-9a-f]{64})"')


# --- Rate limiting --------------------------------------------------------------------------


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets per key; ``clock`` in seconds (monotonic)."""

    def __init__(
        self,
        rate_per_s: float = RATE_PER_S,
        burst: float = RATE_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Every key starts with a full bucket of ``burst`` tokens."""
        self.rate = rate_per_s
        self.burst = burst
        self.clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def take(self, key: tuple[str, str], *, stranger: bool = False) -> float:
        """Take one token: return 0 when allowed, else the seconds until one is free.

        ``stranger``: the claimed key is no member's; all such messages from one remote
        address share the bucket ``(address, "")`` with the stranger rate and burst.
        """
        now = self.clock()
        if stranger:
            key = (key[0], "")
        rate, burst = (STRANGER_RATE_PER_S, STRANGER_BURST) if stranger else (self.rate, self.burst)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._buckets.clear()  # crude bound on memory under a flood of addresses
            bucket = self._buckets[key] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / rate


# --- Handlers (shared by the Home Assistant views and plain aiohttp apps in tests) ---------


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": code, "detail": message}, status=status, headers=headers)


class BodyError(Exception):
    """The request body cannot be read: the sender's fault (a 4xx, never a traceback)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        """``status`` and ``code`` of the answer."""
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is longer than ``limit`` (stops reading there; a
    compressed body counts as inflated)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body within ``limit`` bytes and ``BODY_TIMEOUT_S``; raises ``BodyError``.

    Every way a body can be broken is the sender's fault: a ``Content-Encoding`` it does not
    follow (``gzip`` over plain text), a body that ends early or is cut by a hang-up, broken
    chunks (aiohttp reports these as ``RequestPayloadError``), a body too large (413) or too
    slow (408).
    """
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            body = await _read_body(request, limit)
    except TimeoutError:
        raise BodyError(408, CODE_BODY_TIMEOUT, "the body did not arrive in time") from None
    except (web.RequestPayloadError, HttpProcessingError, ConnectionError, EOFError) as err:
        # aiohttp reads the rest of a body after the answer ("lingering") and would raise
        # this error again there, logged as an unhandled exception: abandon the rest instead
        # (a time-out ends the lingering quietly and closes the connection).
        request.content.set_exception(TimeoutError("body abandoned"))
        raise BodyError(
            400, CODE_BAD_BODY, f"the body cannot be read: {type(err).__name__}"
        ) from None
    if body is None:
        raise BodyError(413, CODE_BODY_TOO_LARGE, f"a message is at most {limit} bytes")
    return body


def status_of(outputs: list[Any]) -> tuple[int, str, str]:
    """HTTP status, code and detail for the peer's outputs of one message."""
    if len(outputs) == 1 and isinstance(outputs[0], Rejected):
        rejected = outputs[0]
        return STATUS_BY_CODE.get(rejected.code, 400), rejected.code, rejected.detail
    return 202, "accepted", ""


async def async_handle_message(
    link: FederationLink | None, limiter: RateLimiter, request: web.Request
) -> web.Response:
    """``POST .../message``: size limit, rate limit, then the protocol decides."""
    if link is None or link.peer is None:
        return _error(503, CODE_NO_COMMUNITY, "this home is not in a community")
    try:
        body = await read_body(request, MAX_BODY_BYTES)
    except BodyError as err:
        return _error(err.status, err.code, err.detail)
    match = _SENDER.search(body[:4096])
    claimed = match.group(1).decode() if match else ""
    stranger = link.peer.membership.keyring.resolve(claimed) is None
    wait = limiter.take((request.remote or "", claimed), stranger=stranger)
    if wait:
        return _error(
            429,
            CODE_RATE_LIMITED,
            "too many messages; slow down",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    sender_address = request.headers.get(ADDRESS_HEADER, request.remote or "")[:512]
    if (join := link.peer.new_join(body, link.clock())) is not None:
        # A newcomer is welcomed only at an address where this home reaches it (its own
        # key answers there): otherwise it is refused now, and its user can correct it.
        member, address = join
        if not await async_probe_member(link, address, member):
            return _error(
                422, CODE_ADDRESS_UNREACHABLE, f"this home cannot reach you at {address}"[:200]
            )
    outputs = link.receive(body, sender_address)
    status, code, detail = status_of(outputs)
    if status >= 500:  # our bug, logged by the link with its traceback: no details out
        return _error(status, code, "")
    if status != 202:
        return _error(status, code, detail[:200])
    return web.json_response({"ok": True}, status=202)


async def async_probe_member(link: FederationLink, address: str, member: str) -> bool:
    """Whether the home with key ``member`` answers its info at ``address``."""
    info = await HttpTransport(
        link.hass, lambda: "", timeout_s=JOIN_PROBE_TIMEOUT_S, attempts=1
    ).async_info(address)
    return info is not None and info.get("member") == member


def handle_info(link: FederationLink | None) -> web.Response:
    """``GET .../info``: public facts about this home's membership."""
    if link is None:
        return _error(503, CODE_NO_COMMUNITY, "Peer Energy is not set up")
    return web.json_response(link.info())


class PeerMessageView(HomeAssistantView):
    """Receives protocol messages from other homes (for the entry whose link runs)."""

    url = MESSAGE_PATH
    name = "api:peer_energy:message"
    requires_auth = False

    async def post(self, request: web.Request) -> web.Response:
        """Handle one message with the running entry's link and rate limiter."""
        runtime = async_serving_runtime(request.app[KEY_HASS])
        if runtime is None:
            return _error(503, CODE_NO_COMMUNITY, "this home is not in a community")
        return await async_handle_message(runtime.link, runtime.limiter, request)


class PeerInfoView(HomeAssistantView):
    """Public facts for joiners and the reachability probe."""

    url = INFO_PATH
    name = "api:peer_energy:info"
    requires_auth = False

    async def get(self, request: web.Request) -> web.Response:
        """Return the info."""
        return handle_info(async_serving_link(request.app[KEY_HASS]))


def async_register_views(hass: HomeAssistant) -> None:
    """Register the views once per run (Home Assistant cannot unregister views); the
    router itself tells whether they are in, so nothing is kept in ``hass.data``."""
    if any(res.canonical == MESSAGE_PATH for res in hass.http.app.router.resources()):
        return
    hass.http.register_view(PeerMessageView())
    hass.http.register_view(PeerInfoView())


# --- Client ---------------------------------------------------------------------------------


def endpoint(address: str, path: str) -> str:
    """URL of an endpoint of the home at ``address`` (its base URL)."""
    return address.rstrip("/") + path


class HttpTransport:
    """Outgoing messages over HTTP through Home Assistant's shared client session."""

    def __init__(
        self,
        hass: HomeAssistant,
        own_address: Callable[[], str],
        *,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        """``own_address`` is sent along (informational: messages are authenticated by
        signatures, not by where they come from)."""
        self.hass = hass
        self.own_address = own_address
        self.timeout = ClientTimeout(total=timeout_s)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.sent = 0
        self.failed = 0

    async def async_send(self, address: str, data: bytes) -> int:
        """POST one message; retry on connection errors, 5xx and 429; return the status."""
        session = async_get_clientsession(self.hass)
        url = endpoint(address, MESSAGE_PATH)
        headers = {
            "Content-Type": CONTENT_TYPE,
            "User-Agent": USER_AGENT,
            ADDRESS_HEADER: self.own_address(),
        }
        status = 0
        for attempt in range(self.attempts):
            delay = self.backoff_s * (2**attempt)
            try:
                async with session.post(
                    url, data=data, headers=headers, timeout=self.timeout
                ) as response:
                    status = response.status
                    if status == HTTPStatus.TOO_MANY_REQUESTS:
                        retry_after = response.headers.get("Retry-After", "")
                        if retry_after.isdigit():
                            delay = max(delay, min(float(retry_after), 5.0))
                    await response.read()
            except (ClientError, TimeoutError, ValueError, OSError) as err:
                status = 0
                LOGGER.debug("Sending to %s failed: %s", address, type(err).__name__)
            if status < 500 and status not in (0, HTTPStatus.TOO_MANY_REQUESTS):
                break
            if attempt + 1 < self.attempts:
                await asyncio.sleep(delay)
        if status in (200, 202):
            self.sent += 1
        else:
            self.failed += 1
        return status

    async def async_info(self, address: str) -> dict[str, Any] | None:
        """GET the info of the home at ``address``; None when it does not answer."""
        session = async_get_clientsession(self.hass)
        try:
            async with session.get(
                endpoint(address, INFO_PATH),
                headers={"User-Agent": USER_AGENT},
                timeout=self.timeout,
            ) as resp:
                if resp.status != HTTPStatus.OK:
                    return None
                data = await resp.json(content_type=None)
        except (ClientError, TimeoutError, ValueError, OSError):
            return None
        return data if isinstance(data, dict) else None
