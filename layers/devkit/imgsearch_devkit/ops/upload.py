"""``imgsearch upload PATH...``: put image files under the stack's image prefix.

A file becomes ``<prefix><file name>``; a folder's image files keep their path relative to the
folder, as ``aws s3 cp --recursive`` does. Uploads run on a few threads through boto3's managed
transfer (multipart for large files). They go to the image bucket (``Target.image_bucket``: the
user's own bucket when the stack was deployed with ``ExistingBucketName``, else the stack's)::

    plan = plan_uploads([Path("photos"), Path("cat.jpg")], target.image_prefix)
    upload(s3, target.image_bucket, plan, on_done=lambda item: ...)
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgsearch.core.keys import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class UploadItem:
    path: Path
    key: str
    size: int


@dataclass(frozen=True)
class UploadPlan:
    items: list[UploadItem]
    skipped: list[Path]
    """Files that are not images by extension (the embed function would ignore them)."""

    @property
    def total_bytes(self) -> int:
        return sum(item.size for item in self.items)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def plan_uploads(paths: Iterable[Path], prefix: str) -> UploadPlan:
    """Keys for every image file named or found under a named folder; raises on missing paths."""
    items: list[UploadItem] = []
    skipped: list[Path] = []
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if _is_image(file):
                    key = prefix + file.relative_to(path).as_posix()
                    items.append(UploadItem(file, key, file.stat().st_size))
                else:
                    skipped.append(file)
        elif path.is_file():
            if _is_image(path):
                items.append(UploadItem(path, prefix + path.name, path.stat().st_size))
            else:
                skipped.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return UploadPlan(items, skipped)


def content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def upload(
    s3: Any,
    bucket: str,
    plan: UploadPlan,
    on_done: Callable[[UploadItem], None] | None = None,
    threads: int = 8,
) -> int:
    """Upload every planned file to ``bucket`` (the image bucket); returns how many. The first
    failure is raised."""

    def put(item: UploadItem) -> UploadItem:
        s3.upload_file(
            str(item.path), bucket, item.key, ExtraArgs={"ContentType": content_type(item.path)}
        )
        return item

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for item in pool.map(put, plan.items):
            if on_done:
                on_done(item)
    return len(plan.items)
