"""onnxruntime sessions for the two CLIP towers.

``ClipModel.load`` opens a verified bundle, checks that the ONNX graphs match what ``model.json``
says, and returns batched encoders that output L2-normalised float32 vectors::

    from imgsearch.model import ClipModel

    model = ClipModel.load("models/demo-clip", threads=2)
    model.model_id                                # "demo-clip@1"
    model.encode_text(["a red circle"])           # float32 (1, dim), unit length
    model.encode_images([pixels_a, pixels_b])     # float32 (2, dim)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from imgsearch.core.vectors import l2_normalise
from imgsearch.model.bundle import (
    TEXTUAL,
    TOKENIZER,
    VISUAL,
    Bundle,
    ModelManifest,
    open_bundle,
)
from imgsearch.model.errors import BundleError
from imgsearch.model.tokenizer import TextTokenizer


def session_options(threads: int) -> ort.SessionOptions:
    """Options for a short-lived, memory-limited process (a Lambda sandbox).

    - a fixed intra-op thread count (the sandbox's vCPUs) and one inter-op thread;
    - no spinning: idle spinning threads would burn the vCPU share that Lambda bills;
    - no CPU arena: the arena keeps the peak of every batch size ever seen, which a
      memory-capped sandbox cannot afford; the memory pattern planner still reuses buffers.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def _open_session(path: Path, threads: int) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(
            str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(str(path), f"onnxruntime cannot load it: {first_line}") from exc


def _dim_matches(actual: Any, expected: int) -> bool:
    return not isinstance(actual, int) or actual == expected


def _check_visual(session: ort.InferenceSession, manifest: ModelManifest, path: Path) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise BundleError(str(path), f"expected one input (pixels), found {len(inputs)}")
    shape = inputs[0].shape
    size = manifest.image_size
    if len(shape) != 4 or not all(
        _dim_matches(a, e) for a, e in zip(shape[1:], (3, size, size), strict=True)
    ):
        raise BundleError(
            str(path),
            f"input shape {shape} does not match model.json image_size {size} "
            f"(expected [batch, 3, {size}, {size}])",
        )
    _check_output(outputs, manifest, path)


def _check_textual(session: ort.InferenceSession, manifest: ModelManifest, path: Path) -> None:
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 2 or "int64" not in inputs[0].type:
        found = [(i.name, i.shape, i.type) for i in inputs]
        raise BundleError(str(path), f"expected one int64 [batch, tokens] input, found {found}")
    _check_output(session.get_outputs(), manifest, path)


def _check_output(outputs: Sequence[Any], manifest: ModelManifest, path: Path) -> None:
    shape = outputs[0].shape
    if len(shape) != 2 or not _dim_matches(shape[1], manifest.embedding_dim):
        raise BundleError(
            str(path),
            f"output shape {shape} does not match model.json embedding_dim "
            f"{manifest.embedding_dim}",
        )


class ClipModel:
    """Both towers of one bundle, with its tokenizer and manifest.

    ``lazy_visual=True`` defers the image tower's session (and its shape check) to the first
    ``encode_images`` call: a query function whose traffic is mostly text then starts without
    it (about half of the model's load time for ViT-B/32), and without its file: it is fetched
    (from an S3 bundle) and verified against its sha256 then too.
    """

    def __init__(self, bundle: Bundle, threads: int = 1, lazy_visual: bool = False) -> None:
        self.bundle = bundle
        self.manifest = bundle.manifest
        self.threads = threads
        self._visual: ort.InferenceSession | None = None
        self._visual_input = ""
        self._visual_lock = threading.Lock()
        if not lazy_visual:
            self._visual_session()
        textual_path = bundle.path(TEXTUAL)
        self._textual = _open_session(textual_path, threads)
        _check_textual(self._textual, self.manifest, textual_path)
        self._textual_input = self._textual.get_inputs()[0].name
        self.tokenizer = TextTokenizer.from_file(
            bundle.path(TOKENIZER), self.manifest.context_length, self.manifest.pad_token_id
        )

    def _visual_session(self) -> ort.InferenceSession:
        with self._visual_lock:
            if self._visual is None:
                path = self.bundle.path(VISUAL)
                session = _open_session(path, self.threads)
                _check_visual(session, self.manifest, path)
                self._visual_input = session.get_inputs()[0].name
                self._visual = session
            return self._visual

    @classmethod
    def load(
        cls,
        uri: str | Path,
        threads: int = 1,
        cache_dir: str | Path = "/tmp/imgsearch/models",
        s3_client: Any = None,
        lazy_visual: bool = False,
    ) -> ClipModel:
        files = (TEXTUAL, TOKENIZER) if lazy_visual else None
        return cls(open_bundle(uri, cache_dir, s3_client, files), threads, lazy_visual)

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    @property
    def dim(self) -> int:
        return self.manifest.embedding_dim

    def encode_images(self, pixels: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """One model call for a batch of preprocessed images (see ``preprocess.to_pixels``)."""
        batch = np.ascontiguousarray(
            np.stack(list(pixels)) if not isinstance(pixels, np.ndarray) else pixels,
            dtype=np.float32,
        )
        if batch.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        session = self._visual or self._visual_session()
        (out,) = session.run(None, {self._visual_input: batch})[:1]
        return l2_normalise(out)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = self.tokenizer(list(texts))
        (out,) = self._textual.run(None, {self._textual_input: ids})[:1]
        return l2_normalise(out)
