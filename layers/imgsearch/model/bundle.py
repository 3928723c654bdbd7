"""Model bundles: a folder (or ``s3://`` prefix) holding both CLIP towers and their manifest.

A bundle is ``visual.onnx``, ``textual.onnx``, ``tokenizer.json`` and ``model.json``; the
manifest records how to preprocess images and tokenise text and the sha256 of every file::

    from imgsearch.model.bundle import open_bundle

    bundle = open_bundle("s3://my-bucket/models/clip-b32@3/", cache_dir="/tmp/models")
    bundle.manifest.model_id      # "clip-b32@3"
    bundle.path("visual.onnx")    # verified local path

    text_only = open_bundle(uri, files=("textual.onnx", "tokenizer.json"))
    text_only.path("visual.onnx") # fetched and verified now, on first use

A file in the download cache was verified before it got its name there, so it is not hashed
again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imgsearch.core.keys import split_s3_uri
from imgsearch.model.errors import BundleError

MANIFEST = "model.json"
VISUAL = "visual.onnx"
TEXTUAL = "textual.onnx"
TOKENIZER = "tokenizer.json"
REQUIRED_FILES = (VISUAL, TEXTUAL, TOKENIZER)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ModelManifest:
    """The contents of ``model.json``."""

    name: str
    version: str
    embedding_dim: int
    image_size: int
    """Side of the centre crop fed to the visual tower."""
    context_length: int
    files: dict[str, str]
    """File name -> sha256 (hex) for every file of the bundle but the manifest."""
    resize_size: int = 0
    """Short side after the bicubic resize; defaults to ``image_size``."""
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    pad_token_id: int = 0
    source: str = ""
    license: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else (training figures, parity checks, quantisation), kept as written."""

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def checkpoint_file(self) -> str:
        """The training checkpoint a retrainable bundle carries (``model.json``'s
        ``checkpoint.file``), "" for none. It is not among ``files``: serving never needs it."""
        entry = self.extra.get("checkpoint")
        return str(entry.get("file", "")) if isinstance(entry, dict) else ""

    @property
    def resize(self) -> int:
        return self.resize_size or self.image_size

    @classmethod
    def from_dict(cls, data: dict[str, Any], file: str = MANIFEST) -> ModelManifest:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        missing = [
            k
            for k in ("name", "version", "embedding_dim", "image_size", "context_length", "files")
            if k not in data
        ]
        if missing:
            raise BundleError(file, "missing fields: " + ", ".join(missing))
        values = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        try:
            for key in (
                "embedding_dim",
                "image_size",
                "context_length",
                "resize_size",
                "pad_token_id",
            ):
                if key in values:
                    values[key] = int(values[key])
            for key in ("mean", "std"):
                if key in values:
                    values[key] = tuple(float(x) for x in values[key])
            values["version"] = str(values["version"])
            values["files"] = {str(k): str(v) for k, v in dict(values["files"]).items()}
            manifest = cls(**values, extra=extra)
        except (TypeError, ValueError) as exc:
            raise BundleError(file, f"invalid field value: {exc}") from exc
        if len(manifest.mean) != 3 or len(manifest.std) != 3:
            raise BundleError(file, "mean and std must have three values (R, G, B)")
        if manifest.interpolation != "bicubic":
            raise BundleError(file, f"unsupported interpolation {manifest.interpolation!r}")
        for name in REQUIRED_FILES:
            if name not in manifest.files:
                raise BundleError(file, f"no sha256 recorded for {name}")
        return manifest

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return {**data, **extra}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class _Deferred:
    """The files of a bundle not verified yet, each fetched (when its bundle is on S3) and
    verified the first time it is asked for."""

    def __init__(self, names: set[str], fetch: Callable[[str], None]) -> None:
        self._names, self._fetch = names, fetch
        self._lock = threading.Lock()

    def ready(self, name: str) -> None:
        if name not in self._names:
            return
        with self._lock:
            if name in self._names:
                self._fetch(name)
                self._names.discard(name)


@dataclass(frozen=True)
class Bundle:
    """A bundle on local disk: ``path`` gives a file's verified local path."""

    root: Path
    manifest: ModelManifest
    deferred: _Deferred | None = field(default=None, compare=False, repr=False)

    def path(self, name: str) -> Path:
        if self.deferred is not None:
            self.deferred.ready(name)
        return self.root / name


def read_manifest(root: Path) -> ModelManifest:
    file = root / MANIFEST
    if not file.is_file():
        raise BundleError(str(file), "not found (is this a model bundle folder?)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(str(file), f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(str(file), "must hold a JSON object")
    return ModelManifest.from_dict(data, str(file))


def verify(root: Path, manifest: ModelManifest, names: Iterable[str] | None = None) -> None:
    """Check the files ``names`` (default: every file the manifest lists) against their sha256."""
    for name in manifest.files if names is None else names:
        _check(root / name, manifest.files[name])


def _check(file: Path, expected: str, shown: str = "") -> None:
    if not file.is_file():
        raise BundleError(shown or str(file), "not found")
    actual = sha256_file(file)
    if actual != expected:
        raise BundleError(
            shown or str(file), f"sha256 mismatch: model.json says {expected}, file has {actual}"
        )


def open_bundle(
    uri: str | Path,
    cache_dir: str | Path = "/tmp/imgsearch/models",
    s3_client: Any = None,
    files: Iterable[str] | None = None,
) -> Bundle:
    """Open a bundle from a folder or an ``s3://bucket/prefix`` (downloaded once into
    ``cache_dir``). ``files`` (default: all) are fetched and verified now, the others when
    ``Bundle.path`` first asks for them."""
    uri = str(uri)
    if not uri.startswith("s3://"):
        root = Path(uri)
        manifest = read_manifest(root)
        now, later = _split(manifest, files)
        verify(root, manifest, now)
        return Bundle(root, manifest, _Deferred(later, lambda name: verify(root, manifest, [name])))
    if s3_client is None:
        import boto3

        s3_client = boto3.client("s3")
    source = _S3Source(uri, Path(cache_dir), s3_client)
    manifest = source.manifest()
    now, later = _split(manifest, files)
    for name in now:
        source.fetch(manifest, name)
    return Bundle(
        source.root, manifest, _Deferred(later, lambda name: source.fetch(manifest, name))
    )


def _split(manifest: ModelManifest, files: Iterable[str] | None) -> tuple[list[str], set[str]]:
    """The files to verify now (in the manifest's order) and those to leave for later."""
    wanted = set(manifest.files if files is None else files)
    if unknown := sorted(wanted - set(manifest.files)):
        raise BundleError(MANIFEST, f"lists no {', '.join(unknown)}")
    return [n for n in manifest.files if n in wanted], set(manifest.files) - wanted


def _bucket_and_prefix(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> (``bucket``, ``a/b/``); the prefix is "" at the bucket's root."""
    bucket, prefix = split_s3_uri(uri)
    return bucket, prefix.rstrip("/") + "/" if prefix else ""


class _S3Source:
    """A bundle's prefix on S3 and its folder in the download cache. A file gets its name there
    only once it is whole and matches its sha256, so a file that is there is not hashed again."""

    def __init__(self, uri: str, cache_dir: Path, s3: Any) -> None:
        self.bucket, self.prefix = _bucket_and_prefix(uri)
        self.uri = f"s3://{self.bucket}/{self.prefix}"
        self.root = cache_dir / hashlib.sha256(self.uri.encode()).hexdigest()[:16]
        self.s3 = s3

    def manifest(self) -> ModelManifest:
        if not (self.root / MANIFEST).is_file():
            self._download(MANIFEST, None)
        return read_manifest(self.root)

    def fetch(self, manifest: ModelManifest, name: str) -> None:
        if not (self.root / name).is_file():
            self._download(name, manifest.files[name])

    def _download(self, name: str, sha256: str | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.root, prefix=f".{name}.", suffix=".part")
        os.close(handle)
        partial = Path(temporary)
        try:
            try:
                self.s3.download_file(self.bucket, self.prefix + name, str(partial))
            except Exception as exc:  # botocore raises several unrelated types here
                raise BundleError(self.uri + name, f"cannot download: {exc}") from exc
            if sha256 is not None:
                _check(partial, sha256, shown=self.uri + name)
            partial.replace(self.root / name)
        finally:
            partial.unlink(missing_ok=True)


def bundle_model_id(uri: str, s3: Any, cache_dir: str) -> str:
    """The ``name@version`` of a bundle from its ``model.json`` alone (no ONNX session)."""
    if not uri.startswith("s3://"):
        return read_manifest(Path(uri)).model_id
    bucket, prefix = _bucket_and_prefix(uri)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as folder:
        s3.download_file(bucket, prefix + MANIFEST, str(Path(folder) / MANIFEST))
        return read_manifest(Path(folder)).model_id
