"""The ``workload.data`` section of a campaign file."""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Data kinds, as written in a generated file's ``hpo.kind`` attribute and accepted by ``hpo data``.
DATA_KINDS: tuple[str, ...] = ("calo", "cosmo3d", "lensing")


class DataConfig(BaseModel):
    """Where a workload's data lives and how it is split.

    Attributes:
        path: HDF5 file. Relative paths are resolved against the current directory when the campaign is
            loaded, so trials on other nodes see an absolute path.
        split: fractions (train, validation, test); each >= 0, train and validation > 0, sum 1. The
            split is deterministic given the campaign seed.
        max_events: use only this many events of the file (after the deterministic shuffle); for quick
            runs. ``None`` uses all.
        shuffle_buffer: size of the per-epoch shuffle buffer of the training stream (events).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    max_events: int | None = Field(default=None, ge=1)
    shuffle_buffer: int = Field(default=2048, ge=1)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name an HDF5 file, e.g. data/calo.h5")
        return str(Path(value).expanduser().absolute())

    @model_validator(mode="after")
    def _split_sums_to_one(self) -> DataConfig:
        train, val, test = self.split
        if min(self.split) < 0 or train <= 0 or val <= 0:
            raise ValueError(
                f"split fractions must be >= 0 with train and validation > 0, but got {list(self.split)}"
            )
        if not math.isclose(train + val + test, 1.0, abs_tol=1e-6):
            raise ValueError(
                f"split fractions must sum to 1, but got {list(self.split)} (sum {train + val + test:g})"
            )
        return self
