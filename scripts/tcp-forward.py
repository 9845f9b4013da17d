#!/usr/bin/env python3
"""Forwards TCP connections: tcp-forward.py LISTEN_HOST:PORT=TARGET_HOST:PORT ...

The stack's API server and Prometheus listen on 127.0.0.1 only, which a pod's network
namespace cannot reach. scripts/stack.sh runs this on the node's bridge address (never on a
public interface) so that pods on the real node reach them as they would in a cluster.
Bytes are copied as they are: TLS stays end to end between the pod and the API server.
"""
import asyncio
import sys


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


def handler(target_host, target_port):
    async def handle(client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(target_host, target_port), timeout=5)
        except (OSError, asyncio.TimeoutError) as e:
            print(f"tcp-forward: {target_host}:{target_port} unreachable: {e}", flush=True)
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))
    return handle


async def main(specs):
    servers = []
    for spec in specs:
        listen, sep, target = spec.partition("=")
        if not sep:
            sys.exit(f"tcp-forward: {spec!r}: expected LISTEN_HOST:PORT=TARGET_HOST:PORT")
        lh, lp = listen.rsplit(":", 1)
        th, tp = target.rsplit(":", 1)
        servers.append(await asyncio.start_server(handler(th, int(tp)), lh, int(lp), reuse_address=True))
        print(f"tcp-forward: {lh}:{lp} -> {th}:{tp}", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1:]))
