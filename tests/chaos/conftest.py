"""Fixtures of the chaos tests; the harness itself is :mod:`tests.chaos.harness` (``benchmarks/chaos.py`` uses it too)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import ChaosCampaign, kill_session, new_campaign


@pytest.fixture
def chaos_campaign(tmp_path: Path, calo_file: Path) -> Iterator[Callable[..., ChaosCampaign]]:
    """``chaos_campaign(name, uri, **options)``: a campaign file (see :func:`tests.chaos.harness.new_campaign`) and
    its environment; every driver it started is killed, with its session, at the end."""
    made: list[ChaosCampaign] = []

    def make(name: str, uri: str, **options: Any) -> ChaosCampaign:
        made.append(new_campaign(tmp_path, name, uri, calo_file, **options))
        return made[-1]

    yield make
    for campaign in made:
        if campaign.driver is not None and campaign.driver.poll() is None:
            kill_session(campaign.driver.pid)
