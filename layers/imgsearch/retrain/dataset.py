"""The training data: judged (query, image) pairs from feedback, captions and the golden set.

One example per distinct query (``normalise_query``): the images that answer it (clicked,
judged relevant, captioned, or in the golden set) and the ones that do not (shown on a page
that got a click but never clicked, or judged irrelevant: the hard negatives a contrastive
loss learns most from). Queries are split by a hash of their text, so a held-out query stays
held out in every run and never trains; golden-set queries are always held out (they are what
the evaluation checks regressions on). What the training job reads (``train.jsonl``,
``heldout.jsonl``, ``manifest.json``, and ``images.manifest``, a SageMaker manifest of the
images to download)::

    dataset = build_dataset(feedback_examples(joined), captions, golden_examples(golden),
                            existing=lambda keys: set(keys), heldout_fraction=0.25)
    dataset.train[0].line()       # '{"query":"red circle on a black background",...}'
    manifest = write_dataset(s3, bucket, "retrain/run-1/dataset/", dataset, image_bucket,
                             "retrain/run-1/images.manifest", created_at=now_iso())
    manifest.sha256               # the same examples, the same digest
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from imgsearch.catalog.contract import Contract, write_object
from imgsearch.core.errors import ImgsearchError
from imgsearch.eval.golden import GoldenSet, normalise_query
from imgsearch.usage.join import POSITIVE_EVENTS, JoinedQuery

Source = Literal["feedback", "caption", "golden"]
TRAIN_FILE, HELDOUT_FILE, MANIFEST_FILE, IMAGES_FILE = (
    "train.jsonl",
    "heldout.jsonl",
    "manifest.json",
    "images.manifest",
)


class DatasetError(ImgsearchError):
    """Captions that are not JSON lines of ``{"key", "caption"}``."""


@dataclass(frozen=True)
class Example:
    query: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...] = ()
    weight: float = 1.0
    """Searches of the query that got a positive judgment (1 for a caption or golden line)."""
    source: Source = "feedback"

    def line(self) -> str:
        return json.dumps(
            {
                "query": self.query,
                "positives": list(self.positives),
                "negatives": list(self.negatives),
                "weight": self.weight,
                "source": self.source,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_line(cls, line: str) -> Example:
        body = json.loads(line)
        return cls(
            query=body["query"],
            positives=tuple(body["positives"]),
            negatives=tuple(body.get("negatives", ())),
            weight=float(body.get("weight", 1.0)),
            source=body.get("source", "feedback"),
        )


@dataclass
class Dataset:
    train: list[Example]
    heldout: list[Example]
    dropped: dict[str, int] = field(default_factory=dict)
    """What was left out and why: ``deleted_images``, ``no_positive``, ``not_text``."""

    def files(self) -> dict[str, bytes]:
        return {
            TRAIN_FILE: _lines(self.train),
            HELDOUT_FILE: _lines(self.heldout),
        }

    def sha256(self) -> str:
        return files_sha256(self.files())

    def keys(self) -> list[str]:
        """Every image an example names, sorted."""
        return sorted(
            {k for e in (*self.train, *self.heldout) for k in (*e.positives, *e.negatives)}
        )


class DatasetManifest(Contract):
    LABEL = "the dataset manifest"

    sha256: str
    created_at: str
    train_queries: int
    heldout_queries: int
    train_pairs: int
    heldout_pairs: int
    images: int
    sources: dict[str, int] = Field(default_factory=dict)
    """Examples by source (``feedback``, ``caption``, ``golden``)."""
    dropped: dict[str, int] = Field(default_factory=dict)


def files_sha256(files: dict[str, bytes]) -> str:
    """The dataset's digest: each file's name, length and bytes, in name order (the training
    job checks the files it received against it)."""
    digest = hashlib.sha256()
    for name, body in sorted(files.items()):
        digest.update(f"{name} {len(body)}\n".encode())
        digest.update(body)
    return digest.hexdigest()


def _lines(examples: list[Example]) -> bytes:
    return "".join(e.line() + "\n" for e in examples).encode()


def is_heldout(query: str, fraction: float) -> bool:
    """Whether ``query`` (normalised) is held out: a stable hash, not a random draw."""
    digest = hashlib.sha256(b"imgsearch-heldout\0" + query.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def feedback_examples(queries: Iterable[JoinedQuery]) -> tuple[list[Example], dict[str, int]]:
    """Text searches' judgments grouped by query; (examples, what was left out)."""
    votes: dict[str, Counter[str]] = {}
    shown: dict[str, set[str]] = {}
    searches: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    for joined in queries:
        search = joined.search
        if search.kind != "text" or not search.text:
            dropped["not_text"] += bool(joined.feedback)
            continue
        query = normalise_query(search.text)
        tally = votes.setdefault(query, Counter())
        for judgment in joined.feedback:
            tally[judgment.key] += 1 if judgment.event in POSITIVE_EVENTS else -1
        if joined.positive_keys():
            searches[query] += 1
            shown.setdefault(query, set()).update(r.key for r in search.results)
    examples = []
    for query in sorted(votes):
        positives = tuple(sorted(k for k, v in votes[query].items() if v > 0))
        if not positives:
            dropped["no_positive"] += 1
            continue
        judged_irrelevant = {k for k, v in votes[query].items() if v < 0}
        negatives = (shown.get(query, set()) - set(positives)) | judged_irrelevant
        examples.append(Example(query, positives, tuple(sorted(negatives)), float(searches[query])))
    return examples, dict(dropped)


def caption_examples(body: bytes, key: str) -> list[Example]:
    """``{"key", "caption"}`` JSON lines as examples (one positive each)."""
    examples = []
    for number, line in enumerate(body.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{key} line {number}: not JSON ({exc.msg})") from exc
        image, text = (item.get("key"), item.get("caption")) if isinstance(item, dict) else (0, 0)
        if not isinstance(image, str) or not image or not isinstance(text, str) or not text.strip():
            raise DatasetError(f'{key} line {number}: needs "key" and "caption" strings')
        examples.append(Example(normalise_query(text), (image,), source="caption"))
    return examples


def golden_examples(golden: GoldenSet | None) -> list[Example]:
    if golden is None:
        return []
    return [
        Example(normalise_query(q), tuple(sorted(r)), source="golden")
        for q, r in zip(golden.queries, golden.relevant, strict=True)
    ]


def _merge(examples: list[Example]) -> Example:
    """One example of a query that several sources or caption lines give."""
    positives = {k for e in examples for k in e.positives}
    negatives = {k for e in examples for k in e.negatives} - positives
    golden = any(e.source == "golden" for e in examples)
    source: Source = "golden" if golden else examples[0].source
    return Example(
        examples[0].query,
        tuple(sorted(positives)),
        tuple(sorted(negatives)),
        sum(e.weight for e in examples),
        source,
    )


def build_dataset(
    feedback: list[Example],
    captions: list[Example],
    golden: list[Example],
    existing: Callable[[Iterable[str]], set[str]],
    heldout_fraction: float,
    dropped: dict[str, int] | None = None,
) -> Dataset:
    """Merge the sources by query, drop images that are gone (``existing`` answers which keys
    still are), split into train and held out."""
    by_query: dict[str, list[Example]] = {}
    for example in (*feedback, *captions, *golden):
        by_query.setdefault(example.query, []).append(example)
    merged = [_merge(group) for _, group in sorted(by_query.items())]
    named = {k for e in merged for k in (*e.positives, *e.negatives)}
    alive = existing(sorted(named))
    counts: Counter[str] = Counter(dropped or {})
    counts["deleted_images"] += len(named - alive)
    train, heldout = [], []
    for example in merged:
        positives = tuple(k for k in example.positives if k in alive)
        if not positives:
            counts["no_positive"] += 1
            continue
        kept = Example(
            example.query,
            positives,
            tuple(k for k in example.negatives if k in alive),
            example.weight,
            example.source,
        )
        held = example.source == "golden" or is_heldout(example.query, heldout_fraction)
        (heldout if held else train).append(kept)
    return Dataset(train, heldout, {k: v for k, v in counts.items() if v})


def manifest_for(dataset: Dataset, created_at: str) -> DatasetManifest:
    sources = Counter(e.source for e in (*dataset.train, *dataset.heldout))
    return DatasetManifest(
        sha256=dataset.sha256(),
        created_at=created_at,
        train_queries=len(dataset.train),
        heldout_queries=len(dataset.heldout),
        train_pairs=sum(len(e.positives) for e in dataset.train),
        heldout_pairs=sum(len(e.positives) for e in dataset.heldout),
        images=len(dataset.keys()),
        sources=dict(sorted(sources.items())),
        dropped=dict(sorted(dataset.dropped.items())),
    )


def images_manifest(image_bucket: str, keys: list[str]) -> bytes:
    """A SageMaker ``ManifestFile``: the training job downloads each key to its channel."""
    body: list[Any] = [{"prefix": f"s3://{image_bucket}/"}, *keys]
    return json.dumps(body, ensure_ascii=False).encode()


def write_dataset(
    s3: Any,
    bucket: str,
    prefix: str,
    dataset: Dataset,
    image_bucket: str,
    images_key: str,
    created_at: str,
) -> DatasetManifest:
    """``train.jsonl``, ``heldout.jsonl`` and ``manifest.json`` under ``prefix`` (the dataset
    channel), the images' SageMaker manifest at ``images_key`` (the images channel)."""
    for name, body in dataset.files().items():
        s3.put_object(Bucket=bucket, Key=prefix + name, Body=body)
    manifest = manifest_for(dataset, created_at)
    write_object(s3, bucket, prefix + MANIFEST_FILE, manifest)
    s3.put_object(Bucket=bucket, Key=images_key, Body=images_manifest(image_bucket, dataset.keys()))
    return manifest


def read_examples(s3: Any, bucket: str, key: str) -> list[Example]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    return [Example.from_line(line) for line in body.splitlines() if line.strip()]
