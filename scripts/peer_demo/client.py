"""The REST and websocket client, and driving data entry flows as the frontend does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import json
from typing import Any

import aiohttp

from .settings import FLOW_TIMEOUT
from .util import DemoError

# ---------------------------------------------------------------------------------------
# REST and websocket client
# ---------------------------------------------------------------------------------------


@dataclass
class Api:
    """A tiny Home Assistant REST + websocket client."""

    session: aiohttp.ClientSession
    base: str
    token: str | None = None
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _ws_id: int = 0

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def request(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        ok: tuple[int, ...] = (200, 201),
        limit: float = 60.0,
    ) -> Any:
        async with self.session.request(
            method,
            self.base + path,
            json=payload,
            headers=self._headers(),
            timeout=aiohttp.ClientTimeout(total=limit),
        ) as resp:
            text = await resp.text()
            if resp.status not in ok:
                raise DemoError(f"{method} {path} -> HTTP {resp.status}: {text[:500]}")
            return json.loads(text) if text else None

    async def ws_command(self, message: dict[str, Any], limit: float = 60.0) -> Any:
        if self._ws is None:
            self._ws = await self.session.ws_connect(self.base + "/api/websocket")
            hello = await self._ws.receive_json(timeout=limit)
            if hello.get("type") != "auth_required":
                raise DemoError(f"websocket: unexpected greeting {hello}")
            await self._ws.send_json({"type": "auth", "access_token": self.token})
            auth = await self._ws.receive_json(timeout=limit)
            if auth.get("type") != "auth_ok":
                raise DemoError(f"websocket: authentication failed: {auth}")
        self._ws_id += 1
        await self._ws.send_json({"id": self._ws_id, **message})
        while True:
            reply = await self._ws.receive_json(timeout=limit)
            if reply.get("id") == self._ws_id and reply.get("type") == "result":
                break
        if not reply.get("success"):
            raise DemoError(f"websocket {message['type']}: {reply.get('error')}")
        return reply.get("result")

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()


# ---------------------------------------------------------------------------------------
# Driving data entry flows as the frontend does
# ---------------------------------------------------------------------------------------


def fill_form(
    schema: list[dict[str, Any]], answers: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """Answer a serialised form schema from ``answers`` (flat; sections are filled too)."""
    user_input: dict[str, Any] = {}
    unanswered: list[str] = []
    for fld in schema:
        name = fld["name"]
        if fld.get("type") == "expandable":  # a section: its fields nest under its name
            nested_answers = answers.get(name, answers)
            nested = fill_form(fld.get("schema", []), nested_answers, f"{where}/{name}")
            if nested:
                user_input[name] = nested
            continue
        if name in answers:
            user_input[name] = answers[name]
        elif fld.get("required") and "default" not in fld:
            unanswered.append(name)
    if unanswered:
        raise DemoError(
            f"{where}: the demo has no answer for required field(s) {unanswered}; "
            f"form fields: {[f['name'] for f in schema]}"
        )
    return user_input


def choose_menu(options: Any, preferred: tuple[str, ...], where: str) -> str:
    names = list(options) if isinstance(options, list | dict) else []
    for wanted in preferred:
        if wanted in names:
            return wanted
    raise DemoError(f"{where}: menu offers {names}, none of {list(preferred)}")


async def drive_flow(
    api: Api,
    index_path: str,
    start: dict[str, Any],
    answers: Mapping[str, Any],
    *,
    menu: tuple[str, ...] = (),
    label: str,
) -> dict[str, Any]:
    """Start a flow and answer each step until it creates an entry."""
    result: dict[str, Any] = await api.request("POST", index_path, start, limit=FLOW_TIMEOUT)
    submitted: dict[str, Any] | None = None
    for _ in range(12):
        kind = result.get("type")
        step = result.get("step_id", "?")
        where = f"{label} step {step!r}"
        if kind == "create_entry":
            return result
        if kind == "abort":
            raise DemoError(f"{label}: flow aborted: {result.get('reason')}")
        if kind == "menu":
            payload: dict[str, Any] = {
                "next_step_id": choose_menu(result.get("menu_options"), menu, where)
            }
        elif kind == "form":
            if result.get("errors") and submitted is not None:
                raise DemoError(f"{where}: errors {result['errors']} for input {submitted}")
            payload = fill_form(result.get("data_schema") or [], answers, where)
        else:
            raise DemoError(f"{where}: unexpected flow result type {kind!r}: {result}")
        submitted = payload
        result = await api.request(
            "POST", f"{index_path}/{result['flow_id']}", payload, limit=FLOW_TIMEOUT
        )
    raise DemoError(f"{label}: flow did not finish after 12 steps")
