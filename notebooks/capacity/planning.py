"""Size a deployment for a number of users from what one measured instance sustained.

The measured instance is one web server with some Sanic workers on a machine of some cores.
Scaling out adds identical instances behind a load balancer on the shared PostgreSQL and Redis
(the rate limits and the cache live in Redis, so instances need no affinity). The estimate
assumes the shared services are not the bottleneck, and the connection budget and the Redis
command rate below check that. It is a starting point to verify with a load test at the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Fraction of the measured SLO capacity a planned instance is loaded to, leaving room for
# bursts, a lost instance and noisy neighbours.
DEFAULT_HEADROOM = 0.7
# Redis commands per request: the token buckets (user and tenant), the cached profile and,
# for searches, the result cache. An estimate from reading the request path, not a measurement.
REDIS_COMMANDS_PER_REQUEST = 4
# Commands per second planned per Redis primary (single-threaded, small keys). An estimate with a
# wide margin, not a measurement on this platform; check it with redis-benchmark on the target.
REDIS_COMMANDS_PER_SECOND_PER_PRIMARY = 50_000
# Each worker keeps at least this many connections, so a burst does not wait for a connect.
MIN_POOL_SIZE = 2


@dataclass(frozen=True)
class MeasuredCapacity:
    """Capacity of one instance as the load test measured it."""

    users_per_instance: float  # the largest user count meeting the SLO
    workers_per_instance: int  # BACKEND_WORKERS during the test
    requests_per_user_per_s: float  # throughput / users at that count: 1 / (think time + response time)
    mean_server_time_s: float  # mean time a request occupies a worker (and at most one connection)
    max_connections: int = 100  # PostgreSQL's max_connections
    reserved_connections: int = 10  # DB_RESERVED_CONNECTIONS: left for RQ workers and migrations
    superuser_reserved: int = 3  # PostgreSQL's superuser_reserved_connections (its default)


def recommend(users: int, measured: MeasuredCapacity, headroom: float = DEFAULT_HEADROOM) -> dict:
    """Return instances, workers, pool sizes, connection budget and Redis load for `users` users."""
    if measured.users_per_instance <= 0:
        raise ValueError("users_per_instance must be positive; no measured step met the SLO")
    instances = max(1, math.ceil(users / (measured.users_per_instance * headroom)))
    workers = measured.workers_per_instance
    request_rate = users * measured.requests_per_user_per_s
    per_worker_rate = request_rate / (instances * workers)
    # Little's law: requests in progress per worker = their rate x the time each one takes. Twice
    # that covers the bursts that Poisson-like arrivals bring.
    in_progress = per_worker_rate * measured.mean_server_time_s
    pool_size = max(MIN_POOL_SIZE, math.ceil(2 * in_progress))
    max_overflow = max(1, math.ceil(pool_size / 2))
    connections = instances * workers * (pool_size + max_overflow) + measured.reserved_connections

    redis_rate = request_rate * REDIS_COMMANDS_PER_REQUEST
    redis_connections = max(10, math.ceil(4 * in_progress * REDIS_COMMANDS_PER_REQUEST))
    # Each server checks this budget at start for its own workers only, so the sum over all
    # instances is the planner's job.
    fits = connections <= measured.max_connections - measured.superuser_reserved

    return {
        "users": users,
        "requests_per_s": round(request_rate, 1),
        "instances": instances,
        "workers_per_instance": workers,
        "DB_POOL_SIZE": pool_size,
        "DB_MAX_OVERFLOW": max_overflow,
        "postgres_connections": connections,
        "postgres": (f"fits max_connections {measured.max_connections}" if fits else
                     f"raise max_connections to {_round_up(connections + measured.superuser_reserved, 50)} "
                     f"or pool through PgBouncer"),
        "REDIS_MAX_CONNECTIONS": redis_connections,
        "redis_commands_per_s": round(redis_rate),
        "redis": ("one primary" if redis_rate < REDIS_COMMANDS_PER_SECOND_PER_PRIMARY else
                  f"{math.ceil(redis_rate / REDIS_COMMANDS_PER_SECOND_PER_PRIMARY)} primaries (Redis Cluster)"),
    }


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def recommendation_table(measured: MeasuredCapacity, user_counts=(100, 500, 1000, 5000),
                         headroom: float = DEFAULT_HEADROOM) -> list[dict]:
    return [recommend(users, measured, headroom) for users in user_counts]
