"""The simulated lab's physical sample store: one JSON file per sample, shared by instrument processes.

The synthesiser ``put``s what it made (scenario name and conditions); a diffractometer in another process
``get``s it by sample id and recomputes the hidden truth from the scenario. Writes are atomic (temporary file,
then ``os.replace``), so a reader never sees half a sample.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

__all__ = ["SampleTray", "TraySample"]


@dataclass(frozen=True)
class TraySample:
    """A made sample as it sits on the tray."""

    sample_id: str
    scenario_name: str
    conditions: dict[str, float]
    created_unix_s: float


class SampleTray:
    """A directory of samples; any number of ``SampleTray`` objects, in any process, may share one."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, sample_id: str) -> Path:
        if not isinstance(sample_id, str) or sample_id in ("", ".", ".."):
            raise ValueError(f"invalid sample_id {sample_id!r}")
        name = quote(sample_id, safe="")
        if name.startswith("."):  # dot files on the tray directory are never samples
            name = "%2E" + name[1:]
        return self.directory / f"{name}.json"

    def put(self, sample_id: str, scenario_name: str, conditions: Mapping[str, float]) -> TraySample:
        """Place a sample on the tray.

        Putting the same sample again with the same scenario and conditions is a no-op (a retried synthesis);
        different ones raise ValueError, since one id names one physical sample.
        """
        path = self._path(sample_id)
        values = {str(k): float(v) for k, v in conditions.items()}
        if path.exists():
            existing = self.get(sample_id)
            if existing.scenario_name == scenario_name and existing.conditions == values:
                return existing
            raise ValueError(
                f"sample {sample_id!r} is already on the tray, made as {existing.scenario_name} {existing.conditions}"
            )
        sample = TraySample(sample_id, scenario_name, values, time.time())
        record = {
            "sample_id": sample.sample_id,
            "scenario_name": sample.scenario_name,
            "conditions": sample.conditions,
            "created_unix_s": sample.created_unix_s,
        }
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return sample

    def get(self, sample_id: str) -> TraySample:
        """The sample with ``sample_id``; KeyError if no such sample was made."""
        path = self._path(sample_id)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KeyError(
                f"no sample {sample_id!r} on the tray at {self.directory}: it was never synthesised "
                f"(or was made on another tray)"
            ) from None
        return TraySample(
            sample_id=record["sample_id"],
            scenario_name=record["scenario_name"],
            conditions={k: float(v) for k, v in record["conditions"].items()},
            created_unix_s=float(record["created_unix_s"]),
        )

    def __contains__(self, sample_id: object) -> bool:
        return isinstance(sample_id, str) and sample_id not in ("", ".", "..") and self._path(sample_id).exists()

    def sample_ids(self) -> list[str]:
        """Ids of all samples on the tray, sorted."""
        ids = []
        for path in self.directory.glob("*.json"):
            if not path.name.startswith("."):
                ids.append(json.loads(path.read_text(encoding="utf-8"))["sample_id"])
        return sorted(ids)
