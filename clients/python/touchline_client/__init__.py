"""Python client for the Touchline sync server: an offline-first replica of a club's data.

A device records edits locally, at once and without signal, and syncs when it can::

    credentials = Credentials("coach@example.org", password, device_id="coach-phone-1")
    async with httpx.AsyncClient(base_url="https://touchline.example") as http:
        transport = HttpTransport(http, credentials)  # logs in; refreshes tokens when refused
        device = SyncDevice("coach-phone-1", transport, now_ms=lambda: time.time_ns() // 10**6)
        event = device.create("events", {"match_id": str(match_id), "kind": "goal"})
        await device.sync()  # push the outbox, pull everyone else's changes
        print(device.live("events")[event])

The access token names the club and the device, so each device logs in with its own
``device_id`` and syncs as that device. Pass ``state_path=`` (or use :meth:`SyncDevice.load`)
to keep the state on disk, so a device that restarts re-sends whatever the server had not
acknowledged.
"""

from touchline_client.device import SyncDevice, SyncResult
from touchline_client.edits import InvalidChange
from touchline_client.replica import DeviceReplica
from touchline_client.retry import RetryPolicy
from touchline_client.session import Credentials, Tokens
from touchline_client.transport import (
    Authenticator,
    HttpTransport,
    SyncError,
    SyncRejected,
    SyncTransport,
    SyncUnavailable,
)

__all__ = [
    "Authenticator",
    "Credentials",
    "DeviceReplica",
    "HttpTransport",
    "InvalidChange",
    "RetryPolicy",
    "SyncDevice",
    "SyncError",
    "SyncRejected",
    "SyncResult",
    "SyncTransport",
    "SyncUnavailable",
    "Tokens",
]
