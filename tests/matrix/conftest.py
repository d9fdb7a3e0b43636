"""Fixtures for unit tests of messa.matrix: a fake homeserver behind httpx.MockTransport."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import httpx
import pytest
from matrix_fakes import BASE, TOKEN, FakeServer

from messa.matrix import MatrixApi, RetryPolicy


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def retry() -> RetryPolicy:
    return RetryPolicy(max_retries=3, backoff_initial_s=0.1, backoff_max_s=0.3)


@pytest.fixture
async def api(server: FakeServer, retry: RetryPolicy) -> AsyncIterator[MatrixApi]:
    client = MatrixApi(
        BASE,
        access_token=TOKEN,
        transport=httpx.MockTransport(server.handler),
        retry=retry,
        sleep=server.sleep,
        rng=random.Random(7),
    )
    async with client:
        yield client
