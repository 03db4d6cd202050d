"""Rate limits on the routes anyone may call: token buckets per client address (fabtrust.api.limits),
and their answer over HTTP (429, Retry-After, the error shape with a request id)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fabtrust.api.app import create_app
from fabtrust.api.limits import RateLimiter
from fabtrust.errors import InvalidInput, RateLimited
from fabtrust.home import Home


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_refused_until_tokens_refill() -> None:
    clock = Ticker()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.take("10.0.0.1")
    with pytest.raises(RateLimited) as refused:
        limiter.take("10.0.0.1")
    assert refused.value.retry_after == 1
    limiter.take("10.0.0.2")  # another client has its own bucket
    clock.now += 0.5  # one token back at 2 per second
    limiter.take("10.0.0.1")
    with pytest.raises(RateLimited):
        limiter.take("10.0.0.1")
    clock.now += 3600  # a bucket never holds more than the burst
    for _ in range(3):
        limiter.take("10.0.0.1")
    with pytest.raises(RateLimited):
        limiter.take("10.0.0.1")


def test_retry_after_is_the_whole_seconds_until_the_next_token() -> None:
    clock = Ticker()
    limiter = RateLimiter(rate=0.1, burst=1, clock=clock)
    limiter.take("a")
    with pytest.raises(RateLimited) as refused:
        limiter.take("a")
    assert refused.value.retry_after == 10


def test_the_least_recently_seen_clients_are_forgotten_first() -> None:
    clock = Ticker()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock, max_clients=2)
    limiter.take("a")
    limiter.take("b")
    limiter.take("c")  # "a" is dropped: it starts again with a full bucket
    limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("c")


@pytest.mark.parametrize(
    ("rate", "burst", "clients"),
    [
        pytest.param(0, 1, 1, id="zero-rate"),
        pytest.param(1, 0, 1, id="zero-burst"),
        pytest.param(1, 1, 0, id="no-room"),
    ],
)
def test_a_limit_that_could_never_admit_anyone_is_refused(rate: float, burst: int, clients: int) -> None:
    with pytest.raises(InvalidInput):
        RateLimiter(rate=rate, burst=burst, max_clients=clients)


def test_public_routes_answer_429_with_retry_after_and_a_request_id(tmp_path: Path) -> None:
    with Home.init(tmp_path / "h", passphrase=lambda: "pw", pin=lambda: "", actor="tester") as home:
        size = home.log.size()
        app = create_app(home, rate_limit=RateLimiter(rate=0.01, burst=2))
        with TestClient(app, raise_server_exceptions=False) as client:
            assert [client.get("/healthz").status_code for _ in range(2)] == [200, 200]
            r = client.get("/log/checkpoint")
            assert r.status_code == 429
            assert r.headers["retry-after"] == "100"
            body = r.json()
            assert body["error"] == "rate_limited"
            assert body["request_id"] == r.headers["x-request-id"]
            # a request without credentials to a guarded route counts too (a guesser's traffic)
            assert client.get("/log/entries").status_code == 429
        assert home.log.size() == size  # refused at the door: nothing logged, nothing changed
