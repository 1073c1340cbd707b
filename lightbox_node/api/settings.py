"""The HTTP API's own settings: rate limits, job caps and upload limits, in one object."""

from __future__ import annotations

from dataclasses import dataclass

from lightbox_node.accounts import Rate

SUBMIT_PER_ACCOUNT = Rate(2.0, 20)
SUBMIT_PER_ADDRESS = Rate(5.0, 50)
REGISTER_PER_ADDRESS = Rate.per_minute(0.5, 5)
LOGIN_PER_ADDRESS = Rate.per_minute(30, 20)
LOGIN_PER_USER = Rate.per_minute(10, 10)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Limits the API applies before anything reaches the queue; the operator is exempt."""

    submit_per_account: Rate = SUBMIT_PER_ACCOUNT
    submit_per_address: Rate = SUBMIT_PER_ADDRESS
    register_per_address: Rate = REGISTER_PER_ADDRESS
    login_per_address: Rate = LOGIN_PER_ADDRESS
    login_per_user: Rate = LOGIN_PER_USER
    max_active_jobs: int = 8
    """Jobs one account may have queued or running at once."""
    max_image_bytes: int = 20 << 20
    max_image_pixels: int = 4096 * 4096
    """Larger images are refused before they are decoded (decompression bombs)."""
    max_request_bytes: int = 48 << 20
    """A job request with its images (data URLs are a third larger than the image)."""
    password_threads: int = 4
    """argon2id checks running at once (each takes 64 MiB for a moment)."""
    queue_position_every_s: float = 1.0
    """How often a job's event stream re-checks its place in the queue while it waits."""

    def __post_init__(self) -> None:
        if self.max_active_jobs < 1:
            raise ValueError("max_active_jobs must be at least 1")
        for name in ("max_image_bytes", "max_image_pixels", "max_request_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")


UNLIMITED = Rate(1e9, 1_000_000_000)
"""For benchmarks and tests that measure throughput rather than limits."""
