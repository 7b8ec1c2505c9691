"""The target contract, run unchanged against SQLite, PostgreSQL and Redis (real servers)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import pytest

from tests.contracts.projection_target import OpenTarget, ProjectionTargetContract
from tests.projections.backends import postgres_storage, redis_storage, sqlite_storage


class TestSQLiteTarget(ProjectionTargetContract):
    def storage(self) -> AbstractAsyncContextManager[OpenTarget]:
        return sqlite_storage()


@pytest.mark.postgres
class TestPostgresTarget(ProjectionTargetContract):
    def storage(self) -> AbstractAsyncContextManager[OpenTarget]:
        return postgres_storage()


@pytest.mark.redis
class TestRedisTarget(ProjectionTargetContract):
    def storage(self) -> AbstractAsyncContextManager[OpenTarget]:
        return redis_storage()
