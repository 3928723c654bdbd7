"""Where a backfill run keeps its files, under the service bucket's backfill prefix.

::

    layout = RunLayout("backfill/", "20250101T000000Z-3f2a")
    layout.manifest(7)      # "backfill/20250101T000000Z-3f2a/chunks/000007.json"
    layout.items            # the JSON array the Distributed Map's ItemReader reads
    layout.result(7), layout.report
"""

from __future__ import annotations

from dataclasses import dataclass

CHUNK_DIGITS = 6


@dataclass(frozen=True)
class RunLayout:
    prefix: str
    """``BackfillSettings.prefix`` (``backfill/``)."""
    run_id: str
    """The execution's name: the console's run and its folder carry the same name."""

    @property
    def root(self) -> str:
        return f"{self.prefix}{self.run_id}/"

    def manifest(self, chunk: int) -> str:
        return f"{self.root}chunks/{chunk:0{CHUNK_DIGITS}d}.json"

    @property
    def items(self) -> str:
        return f"{self.root}chunks.json"

    @property
    def results(self) -> str:
        return f"{self.root}results/"

    def result(self, chunk: int) -> str:
        return f"{self.results}{chunk:0{CHUNK_DIGITS}d}.json"

    @property
    def report(self) -> str:
        return f"{self.root}report.json"
