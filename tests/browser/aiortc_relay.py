"""A second, independent WebRTC stack: two aiortc peers connect relay-only through turnpike
(UDP, 127.0.0.1) and echo data-channel messages; with a wrong credential they must not."""

import asyncio
import base64
import hashlib
import hmac
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

from aiortc import (RTCConfiguration, RTCIceServer, RTCPeerConnection,
                    RTCSessionDescription)
from aiortc.rtcconfiguration import RTCIceTransportPolicy

SECRET = "aiortc-test-secret"


def credential(secret, user, ttl=600):
    username = f"{int(time.time()) + ttl}:{user}"
    password = base64.b64encode(
        hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()
    return username, password


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_turnpike(port):
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f"""
[server]
listen_udp = ["127.0.0.1:{port}"]
shards = 1
[relay]
ipv4 = "127.0.0.1"
ports = "58000-58999"
[auth]
secrets = ["{SECRET}"]
[peers]
allow = ["127.0.0.0/8"]
[http]
enabled = false
""")
    cfg.close()
    proc = subprocess.Popen([os.environ["TURNPIKE_BIN"], "--config", cfg.name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        line = proc.stderr.readline()
        if "turnpike started" in line:
            # Keep reading its log, or a full pipe would block turnpike on its next line.
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, cfg.name
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("turnpike did not start")


async def relay_call(port, secret, messages=30, timeout=10.0):
    """Returns (echoed messages, local candidate types, seconds)."""
    user, password = credential(secret, "aiortc")
    config = RTCConfiguration(
        iceServers=[RTCIceServer(urls=f"turn:127.0.0.1:{port}?transport=udp",
                                 username=user, credential=password)],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY)
    a, b = RTCPeerConnection(config), RTCPeerConnection(config)
    echoed = asyncio.Queue()
    opened = asyncio.Event()
    channel = a.createDataChannel("echo")
    channel.on("open", opened.set)
    channel.on("message", lambda m: echoed.put_nowait(m))

    @b.on("datachannel")
    def on_datachannel(ch):
        ch.on("message", lambda m: ch.send(m))

    t0 = time.time()
    try:
        # aiortc gathers fully before it answers: no trickle needed between the two.
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(RTCSessionDescription(**vars(a.localDescription)))
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(RTCSessionDescription(**vars(b.localDescription)))
        types = sorted({line.split()[7] for line in a.localDescription.sdp.splitlines()
                        if line.startswith("a=candidate:")})
        try:
            await asyncio.wait_for(opened.wait(), timeout)
        except asyncio.TimeoutError:
            return 0, types, time.time() - t0
        for i in range(messages):
            channel.send(f"msg {i}")
        got = 0
        try:
            while got < messages:
                m = await asyncio.wait_for(echoed.get(), 5)
                assert m == f"msg {got}", m
                got += 1
        except asyncio.TimeoutError:
            pass
        return got, types, time.time() - t0
    finally:
        await a.close()
        await b.close()


async def main():
    port = free_port()
    proc, cfg = start_turnpike(port)
    try:
        got, types, secs = await relay_call(port, SECRET)
        print(f"relay call: echoed {got}/30, local candidates {types}, {secs:.1f}s")
        assert types == ["relay"], f"relay-only policy gathered {types}"
        assert got == 30, f"echoed {got}/30"
        got, types, secs = await relay_call(port, "wrong-secret", timeout=6.0)
        print(f"wrong credential: echoed {got}, local candidates {types}, {secs:.1f}s")
        assert got == 0 and "relay" not in types, "a wrong credential must not relay"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        os.unlink(cfg)
    print("aiortc: ok")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
