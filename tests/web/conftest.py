"""Fixtures for the web app: a real database with the schema, a config, a TestClient."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from mailer.config import Config, load_config
from mailer.store.db import Store
from mailer.web import create_app


@pytest.fixture
def web_config(config_env: Path, database_url: str) -> Config:
    return dataclasses.replace(load_config(), database_url=database_url)


@pytest.fixture
def client(web_config: Config, store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(web_config), raise_server_exceptions=False) as client:
        yield client
