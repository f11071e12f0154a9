"""Short-lived TURN credentials in coturn's REST scheme (``use-auth-secret``):
username ``"<expiry unix time>:<client id>"``, password ``base64(HMAC-SHA1(secret, username))``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from signaling.protocol import IceServer


def turn_credentials(secret: str, client_id: str, ttl: int, now: float | None = None
                     ) -> tuple[str, str]:
    expiry = int((time.time() if now is None else now) + ttl)
    username = f"{expiry}:{client_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers_for(stun: list[str], turn: list[str], secret: str | None, client_id: str,
                    ttl: int) -> list[IceServer]:
    """The ICE servers one party gets for one call."""
    servers = [IceServer(urls=stun)] if stun else []
    if turn and secret:
        username, credential = turn_credentials(secret, client_id, ttl)
        servers.append(IceServer(urls=turn, username=username, credential=credential))
    return servers
