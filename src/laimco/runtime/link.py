"""Link emulation: an uplink that carries bytes at the rate of the wireless model (docs/runtime.md
"Link emulation"): the rate r(p, g) = B·log₂(1 + p·g/(N₀·B)) bit/s (docs/theory.md eq. 2.4)
is what callers pass in, from laimco.system.Channel.rate_bps.

`ShapedUplink` is a TCP relay on 127.0.0.1 between the device client and the server. The
client connects to the relay instead of the server; every byte the client sends goes through a
first-in-first-out transmitter of rate r, every byte the server sends back is passed on at once
(the downlink is not modelled here). The transmitter is a single-server queue: a chunk of b
bits that arrives at time a leaves at

    d = max(a, d_prev) + b / r,

and the relay sleeps until d before writing it to the server. A chunk that was already
waiting in the socket when the previous one left is sent back to back (d = d_prev + b/r), so
the relay's own scheduling delays do not add up over a long upload. Chunks are at most
`chunk_bytes` (4 KiB by default), so a request of S bits reaches the server about S/r after its
first byte left the client, plus the loopback transfer of one chunk. What is shaped is the
serialized gRPC stream — tensors, protobuf framing, HTTP/2 headers — i.e. the bits a radio
would carry. The test suite measures the upload time of real requests against S/r.

One link is one radio: all connections through one `ShapedUplink` share its rate.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

from laimco.runtime.repository import LOOPBACK


class _Transmitter:
    """The FIFO transmitter of rate r shared by every connection of one link."""

    def __init__(self, rate_bps: float) -> None:
        self.rate_bps = rate_bps
        self._free_at = 0.0
        self._lock = threading.Lock()

    def departure(self, n_bytes: int, queued: bool) -> float:
        """Reserve the transmitter for n_bytes that arrived now, or (`queued`) that were
        waiting behind the previous chunk; the monotonic time their last bit leaves."""
        with self._lock:
            start = self._free_at if queued else max(time.monotonic(), self._free_at)
            self._free_at = start + 8.0 * n_bytes / self.rate_bps
            return self._free_at


class ShapedUplink:
    """A TCP relay from 127.0.0.1:<port> to `target` ("host:port") whose client→server
    direction runs at `rate_bps`. Use `address` as the server address in the client."""

    def __init__(self, target: str, rate_bps: float, *, chunk_bytes: int = 4096) -> None:
        if not rate_bps > 0:
            raise ValueError(f"rate_bps must be positive, got {rate_bps}")
        host, _, port = target.rpartition(":")
        self.target = (host.strip("[]") or LOOPBACK, int(port))
        self.rate_bps = float(rate_bps)
        self.chunk_bytes = int(chunk_bytes)
        self.bytes_up = 0
        self._transmitter = _Transmitter(self.rate_bps)
        self._listener = socket.create_server((LOOPBACK, 0))
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, name="laimco-link", daemon=True)
        self._acceptor.start()

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5.0)
                upstream.settimeout(None)
            except OSError:
                downstream.close()  # the client sees the connection drop, as with no server
                continue
            for sock in (downstream, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [downstream, upstream]
            threading.Thread(target=self._pump, args=(downstream, upstream, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream, False),
                             daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, shaped: bool) -> None:
        queued = False
        try:
            while True:
                data = None
                if queued:  # was more waiting while the last chunk was on the air?
                    with contextlib.suppress(BlockingIOError):
                        data = source.recv(self.chunk_bytes, socket.MSG_DONTWAIT)
                queued = data is not None
                if data is None:
                    data = source.recv(self.chunk_bytes if shaped else 1 << 16)
                if not data:
                    break
                if shaped:
                    delay = self._transmitter.departure(len(data), queued) - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    self.bytes_up += len(data)
                    queued = True
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop accepting and cut every relayed connection."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            self._sockets.clear()

    def __enter__(self) -> ShapedUplink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
