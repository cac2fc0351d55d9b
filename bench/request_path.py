"""The full request path, side by side with raw py-libp2p and Bittensor's Axon/Dendrite.

tnode: sign → libp2p (Noise, Yamux, pooled streams) → verify → spam filters → bus → echo
modality → signed reply → verify. Raw py-libp2p: the same echo over reused streams with a length
prefix and nothing else, on stock hosts (``libp2p.new_host``: py-libp2p's default Noise and Yamux,
none of tnode's code); raw + tnode yamux: that echo on tnode's hosts (``build_host``, tnode's Yamux),
so the muxer's share is visible. Bittensor 10.5.0: an Axon serving an echo synapse and a Dendrite calling
it, both on 127.0.0.1, installed into bench/.venv-bittensor on first use (skipped if that fails).

Loads: 1 KB sequential, 1 KB with 32 concurrent requests, 1 MB sequential, and a batched row: 16
tasks of 1 KB in one request (Bittensor gets the same 16 tasks in one synapse), 32 concurrent,
counted in tasks/s. tnode runs twice: as configured by default (requests authenticated by the Noise
session, answers signed) and with ``sign_requests = true`` (every request signed too). Everything
runs on loopback, bounded in count and time.

    python bench/request_path.py [--quick] [--no-bittensor]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

HERE = Path(__file__).resolve().parent
BT_VENV = HERE / ".venv-bittensor"
KB = 1024
MB = 1024 * 1024
BATCH = 16  # tasks per request in the batched row
BASELINE_1MB_RPS = 55  # 1 MB sequential req/s before the large-payload work (same machine, same bench)


def summarize(name: str, lat: list[float], wall: float) -> dict[str, float | str]:
    lat = sorted(lat)
    return {"name": name, "n": len(lat), "p50_ms": 1e3 * lat[len(lat) // 2],
            "p99_ms": 1e3 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], "rps": len(lat) / wall}


async def drive(call, n: int, concurrency: int) -> tuple[list[float], float]:
    lat: list[float] = []
    todo = iter(range(n))

    async def worker() -> None:
        for _ in todo:
            t = time.perf_counter()
            await call()
            lat.append(time.perf_counter() - t)

    start = time.perf_counter()
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
    return lat, time.perf_counter() - start


# ----------------------------------------------------------------------------------------- tnode
async def bench_tnode(loads: list[tuple[str, int, int, int]], sign_requests: bool = False) -> list[dict]:
    from tnode.node import Node

    out = []
    tmp = Path(tempfile.mkdtemp())

    def doc() -> dict:
        return {"transport": {"type": "libp2p", "listen": ["/ip4/127.0.0.1/tcp/0"], "announce_interval": 0,
                              "streams_per_peer": 32, "sign_requests": sign_requests},
                "modalities": {"echo": {"type": "echo"}}, "log": {"level": "warning"}}

    server = Node.from_dict(doc(), data_dir=tmp / "s")
    client = Node.from_dict(doc(), data_dir=tmp / "c")
    async with server.running(), client.running():
        addr = server.transport.listen_addrs()[0]
        await client.transport.connect(addr)
        for name, size, n, conc in loads:
            payload = os.urandom(size)

            async def call(payload: bytes = payload) -> None:
                await client.transport.request(server.peer_id, "echo", "echo", {}, payload, timeout=30)

            await drive(call, min(n, 20), conc)  # warm the stream pool
            lat, wall = await drive(call, n, conc)
            out.append(summarize(name, lat, wall))
    return out


# ------------------------------------------------------------------------------------- raw libp2p
async def bench_raw(loads: list[tuple[str, int, int, int]], yamux: str = "stock") -> list[dict]:
    """The echo on two stock py-libp2p hosts (``yamux="stock"``) or on tnode's hosts with that Yamux."""
    import multiaddr
    from libp2p import new_host
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from tnode.keys import Keypair
    from tnode.plugins.libp2p.framing import read_exactly
    from tnode.plugins.libp2p.host import build_host

    proto = "/bench/echo/1"
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]

    def host():
        if yamux == "stock":
            return new_host()
        return build_host(Keypair.generate(), max_connections=16, listen=listen, yamux_impl=yamux)

    a, b = host(), host()

    async def handler(stream) -> None:
        try:
            while True:
                head = await stream.read(4)
                if not head:
                    return
                head += await read_exactly(stream, 4 - len(head)) if len(head) < 4 else b""
                body = await read_exactly(stream, int.from_bytes(head, "big"))
                await stream.write(head + body)
        except Exception:
            return
        finally:  # both halves closed: the stream leaves the muxer's table (it counts toward its limit)
            with contextlib.suppress(Exception):
                await stream.close()

    a.set_stream_handler(proto, handler)
    out = []
    async with a.run(listen), b.run(listen):
        await b.connect(info_from_p2p_addr(a.get_addrs()[0]))
        for name, size, n, conc in loads:
            streams = [await b.new_stream(a.get_id(), [proto]) for _ in range(conc)]
            payload = os.urandom(size)
            frame = len(payload).to_bytes(4, "big") + payload

            async def call(streams: list = streams, frame: bytes = frame) -> None:
                s = streams.pop()
                await s.write(frame)
                await read_exactly(s, len(frame))
                streams.append(s)

            await drive(call, min(n, 20), conc)
            lat, wall = await drive(call, n, conc)
            out.append(summarize(name, lat, wall))
            for s in streams:
                await s.close()
        with trio.CancelScope(shield=True):
            await b.close()
            await a.close()
    return out


# ------------------------------------------------------------------------------------- bittensor
BT_SCRIPT = r'''
import asyncio, json, os, sys, tempfile, time, socket
import bittensor as bt
import bittensor.utils.networking as _net

# Keep everything on loopback: never look up an external IP (it would reach outside hosts).
def _no_lookup():
    return "127.0.0.1"
_net.get_external_ip = _no_lookup

class Echo(bt.Synapse):
    data: str = ""

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

async def main(loads):
    tmp = tempfile.mkdtemp()
    wallet = bt.Wallet(name="bench", hotkey="h", path=tmp)
    wallet.create_new_coldkey(use_password=False, overwrite=True, suppress=True)
    wallet.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
    port = free_port()
    config = bt.Axon.config() if hasattr(bt.Axon, "config") else bt.config()
    axon = bt.Axon(wallet=wallet, port=port, ip="127.0.0.1", external_ip="127.0.0.1", external_port=port)
    if hasattr(axon, "fast_config"):
        axon.fast_config.host = "127.0.0.1"
    async def forward(syn: Echo) -> Echo:
        return syn
    axon.attach(forward_fn=forward)
    axon.start()
    await asyncio.sleep(1.0)
    dendrite = bt.Dendrite(wallet=wallet)
    dendrite.external_ip = "127.0.0.1"
    info = axon.info()
    out = []
    for name, size, n, conc in loads:
        data = "x" * size
        async def call():
            r = await dendrite.forward(axons=[info], synapse=Echo(data=data), timeout=30, deserialize=False)
            if not r or r[0].dendrite.status_code != 200:
                raise RuntimeError(f"bittensor call failed: {r[0].dendrite.status_code if r else None}")
        lat = []
        it = iter(range(n))
        async def worker():
            for _ in it:
                t = time.perf_counter(); await call(); lat.append(time.perf_counter() - t)
        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(conc)])
        wall = time.perf_counter() - t0
        lat.sort()
        out.append({"name": name, "n": len(lat), "p50_ms": 1e3 * lat[len(lat)//2],
                    "p99_ms": 1e3 * lat[min(len(lat)-1, int(len(lat)*0.99))], "rps": len(lat)/wall})
    axon.stop()
    await dendrite.aclose_session() if hasattr(dendrite, "aclose_session") else None
    print("RESULT " + json.dumps(out))

asyncio.run(main(json.loads(sys.argv[1])))
'''


def ensure_bittensor() -> Path | None:
    py = BT_VENV / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import bittensor"], capture_output=True).returncode == 0:
        return py
    print("installing bittensor==10.5.0 into bench/.venv-bittensor (first run only)...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(BT_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "bittensor==10.5.0"], check=True, timeout=1200)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"bittensor unavailable ({exc}); skipping that baseline")
        return None
    return py


def bench_bittensor(loads: list[tuple[str, int, int, int]]) -> list[dict] | None:
    py = ensure_bittensor()
    if py is None:
        return None
    # Bittensor's loads are smaller: it is two orders of magnitude slower.
    small = [(name, size, max(10, n // 10), conc) for name, size, n, conc in loads]
    env = {**os.environ, "BT_NO_PARSE_CLI_ARGS": "1"}
    try:
        proc = subprocess.run([str(py), "-c", BT_SCRIPT, json.dumps(small)], capture_output=True, text=True,
                              timeout=600, env=env)
    except subprocess.TimeoutExpired:
        print("bittensor baseline timed out; skipping it")
        return None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    print("bittensor baseline failed:\n" + (proc.stderr or proc.stdout)[-3000:])
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-bittensor", action="store_true")
    args = ap.parse_args()
    scale = 1 if args.quick else 4
    loads = [("1KB sequential", KB, 300 * scale, 1), ("1KB 32 concurrent", KB, 1000 * scale, 32),
             ("1MB sequential", MB, 15 * scale, 1), ("16x1KB batched 32c", BATCH * KB, 250 * scale, 32)]
    results = {"tnode": trio.run(bench_tnode, loads), "tnode signed": trio.run(bench_tnode, loads, True),
               "raw py-libp2p": trio.run(bench_raw, loads),
               "raw + tnode yamux": trio.run(bench_raw, loads, "tnode")}
    bt = None if args.no_bittensor else bench_bittensor(loads)
    if bt:
        results["bittensor 10.5.0"] = bt
    print(f"\n{'load':<20} {'system':<18} {'n':>6} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>9} {'tasks/s':>9}")
    for i, (name, _size, _n, _c) in enumerate(loads):
        tasks = BATCH if i == 3 else 1
        for system, rows in results.items():
            r = rows[i]
            print(f"{name:<20} {system:<18} {r['n']:>6} {r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['rps']:>9.0f} "
                  f"{r['rps'] * tasks:>9.0f}")
    t, signed, raw = results["tnode"], results["tnode signed"], results["raw py-libp2p"]
    lean = results["raw + tnode yamux"]
    print("\nratios")
    for i, (name, *_rest) in enumerate(loads):
        print(f"  {name}: tnode/raw req/s = {t[i]['rps'] / raw[i]['rps']:.2f}, "
              f"signed/raw = {signed[i]['rps'] / raw[i]['rps']:.2f}, "
              f"tnode/(raw + tnode yamux) = {t[i]['rps'] / lean[i]['rps']:.2f} (informational), "
              f"(raw + tnode yamux)/raw = {lean[i]['rps'] / raw[i]['rps']:.2f}")
    verdict(t[0]["rps"] / raw[0]["rps"], 0.8, "tnode/raw py-libp2p req/s, 1 KB sequential (default mode)")
    verdict(t[1]["rps"] / raw[1]["rps"], 0.8, "tnode/raw py-libp2p req/s, 1 KB 32 concurrent (default mode)")
    verdict(t[2]["rps"], 2 * BASELINE_1MB_RPS, f"req/s, 1 MB sequential (2x the {BASELINE_1MB_RPS} req/s "
                                               "measured before on this machine)")
    if bt:
        verdict(t[3]["rps"] / bt[3]["rps"], 20, "tnode/bittensor tasks/s, 16 tasks per request, 32 concurrent")
        verdict(t[1]["rps"] / bt[1]["rps"], 20, "tnode/bittensor req/s, 1 KB 32 concurrent")
        print(f"  1MB sequential: tnode/bittensor req/s = {t[2]['rps'] / bt[2]['rps']:.1f}x")
    else:
        print("(no Bittensor baseline: the goals against it were not measured)")


def verdict(value: float, goal: float, what: str) -> None:
    print(f"{'PASS' if value >= goal else 'FAIL'}: {value:.2f} {what} (goal >= {goal:g})")


if __name__ == "__main__":
    main()
