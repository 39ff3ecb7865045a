"""A fleet of long-lived HTTP/1.1 keep-alive connections to one VIP, for failover tests: it opens
FLOWS connections spread over the client's source addresses, and each asks for a page every
PERIOD seconds on its own connection. A flow is lost when its connection fails (reset, closed,
or no answer within the timeout), so a flow moved to a director that sends it to another real
server (which knows nothing of it and resets it) counts as lost.

usage: flow_fleet.py VIP PORT FLOWS PERIOD_S DURATION_S SOURCE... (the first line out is "ready N"
once every flow answered once; the last is a JSON summary). After the flows, NEW fresh connections
(one request each) are made if the environment gives FLEET_NEW=N: they check that new connections
work after the change the caller made meanwhile."""
import asyncio
import json
import os
import random
import resource
import sys
import time

vip, port, flows, period, duration = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
sources = sys.argv[6:]
new_after = int(os.environ.get("FLEET_NEW", "0"))
REQUEST = b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n"
TIMEOUT = 10.0

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, flows + new_after + 1024), hard))


async def ask(reader, writer):
    """One request on the connection; the server's name (the body) or an exception."""
    writer.write(REQUEST)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(head.split(b"\r\n")[0].decode())
    return (await reader.readexactly(length)).strip().decode()


async def flow(i, ready, start, stop, lost, servers):
    src = sources[i % len(sources)]
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(vip, port, local_addr=(src, 0)), TIMEOUT)
        first = await asyncio.wait_for(ask(reader, writer), TIMEOUT)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as e:
        lost.append(("open", i, repr(e)))
        ready.release()
        return
    servers[first] = servers.get(first, 0) + 1
    ready.release()
    await start.wait()
    await asyncio.sleep(random.random() * period)
    try:
        while not stop.is_set():
            name = await asyncio.wait_for(ask(reader, writer), TIMEOUT)
            if name != first:
                raise ConnectionError(f"answered by {name}, began with {first}")
            await asyncio.sleep(period)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as e:
        lost.append(("established", i, repr(e)))
    finally:
        writer.close()


async def fresh(i, failed):
    src = sources[i % len(sources)]
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(vip, port, local_addr=(src, 0)), TIMEOUT)
        await asyncio.wait_for(ask(reader, writer), TIMEOUT)
        writer.close()
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as e:
        failed.append(repr(e))


async def main():
    ready, start, stop = asyncio.Semaphore(0), asyncio.Event(), asyncio.Event()
    lost, servers = [], {}
    tasks = []
    for i in range(flows):
        tasks.append(asyncio.create_task(flow(i, ready, start, stop, lost, servers)))
        if i % 200 == 199:
            await asyncio.sleep(0.05)  # opened at ~4,000 per second, not all at once
    for _ in range(flows):
        await ready.acquire()
    print(f"ready {flows - len(lost)}", flush=True)
    start.set()
    t0 = time.time()
    await asyncio.sleep(duration)
    stop.set()
    await asyncio.gather(*tasks)
    failed = []
    await asyncio.gather(*(fresh(i, failed) for i in range(new_after)))
    print(json.dumps({
        "flows": flows,
        "lost_established": sum(1 for k, _, _ in lost if k == "established"),
        "failed_to_open": sum(1 for k, _, _ in lost if k == "open"),
        "servers": servers,
        "new": new_after,
        "new_failed": len(failed),
        "examples": [e for _, _, e in lost[:5]] + failed[:5],
        "seconds": round(time.time() - t0, 1),
    }), flush=True)


asyncio.run(main())
