"""Fixtures for the send tests: real SMTP servers, a real database."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from send_smtp_server import Certs, SmtpServer, make_certs

from mailer.config import Config, load_config


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def smtp_factory() -> Iterator[Callable[..., SmtpServer]]:
    servers: list[SmtpServer] = []

    def start(**kwargs: object) -> SmtpServer:
        server = SmtpServer(**kwargs).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def smtp(smtp_factory: Callable[..., SmtpServer]) -> SmtpServer:
    return smtp_factory()


@pytest.fixture
def config(config_env: Path, database_url: str) -> Config:
    return dataclasses.replace(load_config(), database_url=database_url)
