"""Standard Webhooks signatures, as the receiver checks them: the HMAC-SHA256 of
``id.timestamp.body`` under the endpoint's secret, and a timestamp within five minutes (so a
captured request cannot be replayed later)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from http import HTTPStatus

TOLERANCE_SECONDS = 5 * 60
MIN_KEY_BYTES = 16
_ID_LIMIT = 200


class Refused(Exception):
    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _key(secret: str) -> bytes:
    if not secret.startswith("whsec_"):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if len(key) < MIN_KEY_BYTES:
        # An empty or tiny key would let anyone sign: the CMS's own secrets are 32 bytes.
        raise ValueError(f"a webhook secret holds at least {MIN_KEY_BYTES} bytes")
    return key


class Verifier:
    """Standard Webhooks signatures under one or more secrets (two while one is rotated)."""

    def __init__(self, secrets: list[str], tolerance: float = TOLERANCE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        if not secrets:
            raise ValueError("at least one webhook secret is needed")
        self._keys = [_key(secret) for secret in secrets]
        self.tolerance = tolerance
        self.clock = clock

    def verify(self, headers: dict[str, str], body: bytes) -> str:
        """The event's id, or Refused (401) naming what is wrong."""
        message_id = headers.get("webhook-id", "")
        stamp = headers.get("webhook-timestamp", "")
        signatures = headers.get("webhook-signature", "")
        if not message_id or not stamp or not signatures:
            raise Refused(HTTPStatus.UNAUTHORIZED, "webhook-id, webhook-timestamp and "
                                                   "webhook-signature are required")
        if len(message_id) > _ID_LIMIT or not message_id.isascii() or not message_id.isprintable():
            raise Refused(HTTPStatus.UNAUTHORIZED, "webhook-id is not a valid id")
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
            raise Refused(HTTPStatus.UNAUTHORIZED, "webhook-timestamp is not a number of seconds")
        if abs(self.clock() - int(stamp)) > self.tolerance:
            raise Refused(HTTPStatus.UNAUTHORIZED, "webhook-timestamp is too old or too new")
        signed = f"{message_id}.{stamp}.".encode() + body
        expected = [base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
                    for key in self._keys]
        for candidate in signatures.split():
            version, _, value = candidate.partition(",")
            if version != "v1":
                continue
            given = value.encode("ascii", "replace")
            if any(hmac.compare_digest(given, digest) for digest in expected):
                return message_id
        raise Refused(HTTPStatus.UNAUTHORIZED, "webhook-signature does not match")
