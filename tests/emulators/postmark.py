"""A local Postmark: the Suppressions API of a server's message streams.

Endpoints (server token in ``X-Postmark-Server-Token``, else 401 ``ErrorCode 10``):

- ``POST /message-streams/{stream}/suppressions`` ``{"Suppressions": [{"EmailAddress"}]}``,
  at most 50: one ``{"EmailAddress", "Status": "Suppressed"|"Failed", "Message"}`` per
  address, in order. New ones are ManualSuppression with Origin ``Customer``; an address
  already suppressed stays as it was (same reason, same CreatedAt).
- ``POST /message-streams/{stream}/suppressions/delete``, same shape: ``Deleted`` (also for
  an address that was not suppressed) or ``Failed`` (an invalid address, or a spam
  complaint, which Postmark never lets an account reactivate).
- ``GET /message-streams/{stream}/suppressions/dump`` with optional ``fromdate``/``todate``
  (whole days, inclusive, in Postmark's US Eastern time), ``SuppressionReason``,
  ``Origin`` and ``EmailAddress`` (parameter names in any case): every match in one answer,
  newest first. ``CreatedAt`` carries whole seconds and a ``-05:00`` offset.

Bad requests get 422 ``{"ErrorCode", "Message"}``: 402 invalid JSON, 403 a body that is
not a Suppressions list, 410 more than 50 addresses, 1226 an unknown message stream.
Postmark documents no concurrency limit and no rate-limit headers; its 429 carries
``{"ErrorCode": 429, "Message": "Rate limit exceeded"}`` and nothing to wait for.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from tests.emulators.base import Emulator, Faults, Request, Response

EASTERN = timezone(timedelta(hours=-5))
"""Postmark's timestamps and day filters (fixed offset: no daylight saving here)."""
MAX_SUPPRESSIONS = 50
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_REASONS = ("HardBounce", "SpamComplaint", "ManualSuppression")
_ORIGINS = ("Recipient", "Customer", "Admin")
_TOOL_KINDS = {"unsubscribe": "ManualSuppression", "complaint": "SpamComplaint",
               "bounce": "HardBounce"}
INVALID_ADDRESS = "An invalid email address was provided."
NO_AUTHORITY = "You do not have the required authority to change this suppression."


def error(code: int, message: str, status: int = 422) -> Response:
    return Response(status, {"ErrorCode": code, "Message": message})


class PostmarkEmulator(Emulator):
    name = "postmark"
    max_in_flight = 4
    """Not documented by Postmark: an arbitrary modest limit (the connector uses 2)."""

    def __init__(
        self,
        api_key: str,
        *,
        message_stream: str = "broadcast",
        streams: Iterable[str] = (),
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(faults)
        self.api_key = api_key
        self.message_stream = message_stream
        self.clock = clock
        self.suppressions: dict[str, dict[str, dict[str, str]]] = {
            s: {} for s in (message_stream, *streams)
        }
        """stream -> lower-cased address -> the suppression as the dump shows it."""
        self._guard = threading.Lock()
        """State is also changed from the test's thread (tool_opt_out)."""
        stream = r"/message-streams/(?P<stream>[^/]+)/suppressions"
        self.route("POST", stream, "create", self._create)
        self.route("POST", stream + "/delete", "delete", self._delete)
        self.route("GET", stream + "/dump", "dump", self._dump)

    # the tool's answers -----------------------------------------------------
    def authorised(self, request: Request) -> bool:
        token = request.headers.get("x-postmark-server-token", "")
        return bool(token) and token.lower() == self.api_key.lower()

    def unauthorised(self) -> Response:
        return error(10, "The Server API token you provided is invalid or missing.", 401)

    def rate_limited(self, retry_after_s: float) -> Response:
        return error(429, "Rate limit exceeded. Please slow down your requests.", 429)

    def server_error(self) -> Response:
        return Response(500, {"ErrorCode": 0, "Message": "Internal server error."})

    def not_found(self) -> Response:
        return Response(404, {"ErrorCode": 0, "Message": "Entity doesn't exist."})

    # endpoints ----------------------------------------------------------------
    def _batch(self, request: Request) -> list[str] | Response:
        """The addresses of a create/delete body, or the 422 Postmark answers."""
        if request.params["stream"] not in self.suppressions:
            return error(1226, "The message stream for the provided 'ID' was not found.")
        try:
            body = request.json()
        except ValueError:
            return error(402, "Received invalid JSON input.")
        entries = body.get("Suppressions") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("EmailAddress"), str) for e in entries
        ):
            return error(403, "The 'Suppressions' field must be a list of "
                              "{\"EmailAddress\": ...} objects.")
        if len(entries) > MAX_SUPPRESSIONS:
            return error(410, f"You can only change up to {MAX_SUPPRESSIONS} "
                              "suppressions per request.")
        return [e["EmailAddress"] for e in entries]

    async def _create(self, request: Request) -> Response:
        batch = self._batch(request)
        if isinstance(batch, Response):
            return batch
        results = []
        async with self.lock:
            with self._guard:
                held = self.suppressions[request.params["stream"]]
                for address in batch:
                    if not _ADDRESS.match(address.strip()):
                        results.append(_status(address, "Failed", INVALID_ADDRESS))
                        continue
                    held.setdefault(address.strip().lower(), self._entry(
                        address.strip(), "ManualSuppression", "Customer"))
                    results.append(_status(address, "Suppressed"))
        return Response(200, {"Suppressions": results})

    async def _delete(self, request: Request) -> Response:
        batch = self._batch(request)
        if isinstance(batch, Response):
            return batch
        results = []
        async with self.lock:
            with self._guard:
                held = self.suppressions[request.params["stream"]]
                for address in batch:
                    key = address.strip().lower()
                    if not _ADDRESS.match(address.strip()):
                        results.append(_status(address, "Failed", INVALID_ADDRESS))
                    elif held.get(key, {}).get("SuppressionReason") == "SpamComplaint":
                        results.append(_status(address, "Failed", NO_AUTHORITY))
                    else:
                        held.pop(key, None)
                        results.append(_status(address, "Deleted"))
        return Response(200, {"Suppressions": results})

    async def _dump(self, request: Request) -> Response:
        stream = request.params["stream"]
        if stream not in self.suppressions:
            return error(1226, "The message stream for the provided 'ID' was not found.")
        args = {k.lower(): v[0] for k, v in request.query.items() if v}
        days: dict[str, date] = {}
        for name in ("fromdate", "todate"):
            if name in args:
                try:
                    days[name] = date.fromisoformat(args[name][:10])
                except ValueError:
                    return error(403, f"The '{name}' parameter is not a valid date.")
        reason = args.get("suppressionreason", "").lower()
        origin = args.get("origin", "").lower()
        if reason and reason not in {r.lower() for r in _REASONS}:
            return error(403, "Unknown SuppressionReason.")
        if origin and origin not in {o.lower() for o in _ORIGINS}:
            return error(403, "Unknown Origin.")
        wanted = args.get("emailaddress", "").strip().lower()
        with self._guard:
            entries = [dict(e) for e in self.suppressions[stream].values()]
        found = []
        for entry in entries:
            day = datetime.fromisoformat(entry["CreatedAt"]).astimezone(EASTERN).date()
            if ("fromdate" in days and day < days["fromdate"]) or (
                    "todate" in days and day > days["todate"]):
                continue
            if reason and entry["SuppressionReason"].lower() != reason:
                continue
            if origin and entry["Origin"].lower() != origin:
                continue
            if wanted and entry["EmailAddress"].lower() != wanted:
                continue
            found.append(entry)
        found.sort(key=lambda e: (e["CreatedAt"], e["EmailAddress"].lower()), reverse=True)
        return Response(200, {"Suppressions": found})

    # state ----------------------------------------------------------------------
    def _entry(self, address: str, reason: str, origin: str) -> dict[str, str]:
        at = datetime.fromtimestamp(self.clock(), EASTERN).replace(microsecond=0)
        return {"EmailAddress": address, "SuppressionReason": reason, "Origin": origin,
                "CreatedAt": at.isoformat()}

    def state(self) -> Any:
        with self._guard:
            return {"streams": {
                stream: sorted((dict(e) for e in held.values()),
                               key=lambda e: (e["CreatedAt"], e["EmailAddress"].lower()))
                for stream, held in self.suppressions.items()
            }}

    def view(self) -> dict[str, set[str]]:
        labels: dict[str, set[str]] = {}
        with self._guard:
            for stream, held in self.suppressions.items():
                for key, entry in held.items():
                    mine = labels.setdefault(key, set())
                    mine.add("global" if stream == self.message_stream else f"topic:{stream}")
                    if entry["SuppressionReason"] == "SpamComplaint":
                        mine.add("complaint")
                    elif entry["SuppressionReason"] == "HardBounce":
                        mine.add("bounce")
        return labels

    def tool_opt_out(self, address: str, kind: str, topic: str | None = None) -> None:
        """An unsubscribe link click (ManualSuppression), a spam complaint or a hard bounce
        in ``topic``'s stream (the main stream when None), Origin ``Recipient``."""
        stream = topic or self.message_stream
        if stream not in self.suppressions:
            raise KeyError(f"no message stream {stream!r}")
        reason = _TOOL_KINDS[kind]
        key = address.strip().lower()
        with self._guard:
            held = self.suppressions[stream]
            if kind == "unsubscribe" and key in held:
                return  # already suppressed: nothing changes
            held[key] = self._entry(address.strip(), reason, "Recipient")


def _status(address: str, status: str, message: str | None = None) -> dict[str, Any]:
    return {"EmailAddress": address, "Status": status, "Message": message}
