"""A TCP proxy that limits every connection to RATE bytes/s from upstream to client, strictly
(no burst beyond one 64 KiB read), for tests and benchmarks of a store that throttles each
connection. nginx's own limit_rate lets each request send one second's worth at once
(rate × (elapsed + 1)), so requests smaller than RATE bytes are not limited at all.
It prints "peak connections N" each time more connections are open at once than before.

    python3 -m weirtest.throttle --listen 127.0.2.111:PORT --upstream 127.0.2.110:PORT --rate N
"""

import argparse
import asyncio
import time

CHUNK = 64 * 1024


async def pipe(reader, writer, rate=None):
    start = time.monotonic()
    sent = 0
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
            if rate:
                sent += len(data)
                delay = start + sent / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def serve(listen, upstream, rate):
    up_host, up_port = upstream.rsplit(":", 1)

    conns = {"open": 0, "peak": 0}

    async def handle(cr, cw):
        try:
            ur, uw = await asyncio.open_connection(up_host, int(up_port))
        except OSError:
            cw.close()
            return
        conns["open"] += 1
        if conns["open"] > conns["peak"]:
            conns["peak"] = conns["open"]
            # what tests read back (Throttle.peak_connections): connections open at once
            print(f"peak connections {conns['peak']}", flush=True)
        try:
            await asyncio.gather(pipe(cr, uw), pipe(ur, cw, rate))
        finally:
            conns["open"] -= 1

    host, port = listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port), backlog=256)
    async with server:
        await server.serve_forever()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--rate", type=float, required=True, help="bytes per second per connection")
    a = ap.parse_args()
    asyncio.run(serve(a.listen, a.upstream, a.rate))


if __name__ == "__main__":
    main()
