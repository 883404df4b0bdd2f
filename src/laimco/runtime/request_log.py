"""What the device client records about each request: the retry policy, every attempt, where
the time went, and the reply (docs/runtime.md, "Device client")."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RetryPolicy:
    """Per-attempt deadline and exponential backoff: the k-th retry waits
    min(backoff_max_s, backoff_initial_s · backoff_factor^(k−1))."""

    max_attempts: int = 5
    timeout_s: float = 30.0
    backoff_initial_s: float = 0.1
    backoff_factor: float = 2.0
    backoff_max_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.timeout_s <= 0 or self.backoff_initial_s < 0:
            raise ValueError("max_attempts ≥ 1, timeout_s > 0 and backoff_initial_s ≥ 0")

    def delay_s(self, retry: int) -> float:
        """Wait before retry number `retry` (1, 2, ...)."""
        return float(min(self.backoff_max_s,
                         self.backoff_initial_s * self.backoff_factor ** (retry - 1)))


@dataclass
class Attempt:
    """One try of a request: when, how long, and its gRPC outcome ("OK" or the code)."""

    number: int
    started_unix_s: float
    duration_s: float
    code: str
    message: str = ""


@dataclass
class Timings:
    """Where the time of one request went (seconds)."""

    tokenize_s: float = 0.0
    device_s: float = 0.0
    rpc_s: float = 0.0
    server_s: float = 0.0
    server_handler_s: float = 0.0
    server_call_s: float = 0.0
    total_s: float = 0.0
    payload_bytes: int = 0  # bytes of every tensor sent (activation, mask, ids)
    activation_bytes: int = 0  # bytes of the tensors that carry the activation, as sent
    server_activation_bytes: int = 0  # the same, as the server counted them on receipt
    server_batch_requests: int = 0  # requests in the server's forward pass (adaptive batching)

    @property
    def uplink_s(self) -> float:
        """rpc − server compute: transfer, link, serialization and protocol handling."""
        return max(self.rpc_s - self.server_s, 0.0)

    @property
    def overhead_s(self) -> float:
        """total − device-side compute − server compute."""
        return self.total_s - self.tokenize_s - self.device_s - self.server_s

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "uplink_s": self.uplink_s, "overhead_s": self.overhead_s}


@dataclass
class RequestRecord:
    """Everything the client knows about one request."""

    index: int
    request_id: str
    status: str = "pending"  # "ok" | "failed"
    attempts: list[Attempt] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "request_id": self.request_id, "status": self.status,
                "attempts": [asdict(a) for a in self.attempts],
                "timings": self.timings.as_dict(), "error": self.error}


@dataclass
class Reply:
    """The server's output for one request (None when the request failed) and its record."""

    output: np.ndarray[Any, Any] | None
    record: RequestRecord
