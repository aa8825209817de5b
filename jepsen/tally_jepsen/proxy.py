"""A userspace TCP proxy per link, for delays and slow links (the kernel's
netem is not available here).

In a proxied run every node's connections to another node's peer port are
redirected (nftables DNAT inside the sender's namespace) to a port of the
harness's bridge address, one port per ordered link i -> j, where this
proxy relays them to node j. Each link can then be delayed, throttled or
cut. Cutting a link closes its connections and refuses new ones.
"""
import asyncio
import threading
import time


class Link:
    def __init__(self):
        self.delay = 0.0  # seconds added to every chunk, each direction
        self.rate = 0  # bytes per second, each direction (0: unlimited)
        self.cut = False
        self.conns = set()


class LinkProxy:
    def __init__(self, listen_host, port_of, target_of, links):
        """links: [(i, j)]; port_of(i, j) the listening port; target_of(j)
        the (host, port) to relay to."""
        self.listen_host = listen_host
        self.port_of = port_of
        self.target_of = target_of
        self.links = {ij: Link() for ij in links}
        self.loop = asyncio.new_event_loop()
        self._servers = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the link proxy did not start")

    def _run(self):
        asyncio.set_event_loop(self.loop)
        for ij in self.links:
            srv = self.loop.run_until_complete(asyncio.start_server(
                lambda r, w, ij=ij: self._accept(ij, r, w), self.listen_host,
                self.port_of(*ij)))
            self._servers.append(srv)
        self._ready.set()
        self.loop.run_forever()

    async def _accept(self, ij, reader, writer):
        link = self.links[ij]
        if link.cut:
            writer.close()
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.target_of(ij[1]))
        except OSError:
            writer.close()
            return
        conn = (writer, up_w)
        link.conns.add(conn)
        try:
            await asyncio.gather(self._pipe(link, reader, up_w),
                                 self._pipe(link, up_r, writer))
        finally:
            link.conns.discard(conn)
            for w in conn:
                w.close()

    async def _pipe(self, link, reader, writer):
        """Relays chunks in order, each sent `delay` after it arrived, at
        most `rate` bytes a second."""
        queue = asyncio.Queue()

        async def send():
            while True:
                at, data = await queue.get()
                if data is None:
                    return
                wait = at + link.delay - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
                if link.rate:
                    await asyncio.sleep(len(data) / link.rate)

        sender = asyncio.ensure_future(send())
        try:
            while not link.cut:
                data = await reader.read(65536)
                if not data:
                    break
                await queue.put((time.monotonic(), data))
        except (ConnectionError, OSError):
            pass
        finally:
            await queue.put((0, None))
            try:
                await sender
            except (ConnectionError, OSError):
                pass
            writer.close()

    # Control, from any thread --------------------------------------------
    def set(self, ij, delay=None, rate=None, cut=None):
        def apply():
            link = self.links[ij]
            if delay is not None:
                link.delay = delay
            if rate is not None:
                link.rate = rate
            if cut is not None:
                link.cut = cut
                if cut:
                    for conn in list(link.conns):
                        for w in conn:
                            w.close()
        self.loop.call_soon_threadsafe(apply)

    def reset(self):
        for ij in self.links:
            self.set(ij, delay=0.0, rate=0, cut=False)

    def close(self):
        def stop():
            for s in self._servers:
                s.close()
            # Let every relay unwind while the loop still runs.
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.call_later(0.2, self.loop.stop)
        self.loop.call_soon_threadsafe(stop)
        self._thread.join(timeout=5)
