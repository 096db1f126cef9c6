"""Fixtures for the bounce tests: a config and a store, as the other tests get them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mailer.config import Config, load_config


@pytest.fixture
def config(config_env: Path, database_url: str) -> Config:
    return dataclasses.replace(load_config(), database_url=database_url)
