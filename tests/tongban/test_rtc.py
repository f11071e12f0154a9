"""The peer connections every party builds use only the ICE servers they are given."""

from __future__ import annotations

from tongban.rtc import peer_connection

# aiortc keeps the configuration private (no getConfiguration)


async def test_no_server_given_means_no_public_stun() -> None:
    pc = peer_connection()
    try:
        # aiortc has no getter; its default (no list) would be Google's public STUN server
        assert pc._RTCPeerConnection__configuration.iceServers == []
    finally:
        await pc.close()


async def test_the_call_start_servers_are_used_as_given() -> None:
    pc = peer_connection([{"urls": ["turns:turn.test:443"], "username": "u", "credential": "c"},
                          {"urls": []}])
    try:
        servers = pc._RTCPeerConnection__configuration.iceServers
        assert [(s.urls, s.username, s.credential) for s in servers] == [
            (["turns:turn.test:443"], "u", "c")]
    finally:
        await pc.close()
