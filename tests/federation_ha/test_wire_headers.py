"""What a home's HTTP requests say about it: the protocol, not Home Assistant's version."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestServer
from homeassistant.core import HomeAssistant

from custom_components.peer_energy.http import INFO_PATH, MESSAGE_PATH, USER_AGENT, HttpTransport


async def test_requests_carry_a_neutral_user_agent(
    hass: HomeAssistant, socket_enabled: None
) -> None:
    seen: list[str] = []

    async def message(request: web.Request) -> web.Response:
        seen.append(request.headers.get("User-Agent", ""))
        return web.json_response({"ok": True}, status=202)

    async def info(request: web.Request) -> web.Response:
        seen.append(request.headers.get("User-Agent", ""))
        return web.json_response({"member": "x"})

    app = web.Application()
    app.router.add_post(MESSAGE_PATH, message)
    app.router.add_get(INFO_PATH, info)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        address = str(server.make_url("")).rstrip("/")
        transport = HttpTransport(hass, lambda: "http://127.0.0.1:1")
        assert await transport.async_send(address, b"{}") == 202
        assert await transport.async_info(address) == {"member": "x"}
    finally:
        await server.close()
    assert seen == [USER_AGENT, USER_AGENT] == ["PeerEnergy/1"] * 2
    assert not any("HomeAssistant" in agent for agent in seen)
