"""imgsearch against the engines a user would pick instead, in one run, at matched recall.

Data: ``benchmarks/index.py``'s clustered 512-d generator (float16 unit vectors shaped like CLIP
image embeddings) and ``--queries`` held-out queries from the same clusters; exact ground truth
(usearch's brute force, as ``index.py``); recall@10 as ``index.py`` counts it (id overlap). The
engines, each built on ``THREADS`` threads at M=24 / efConstruction=64 where it has such knobs
(imgsearch's settings, so the graphs are alike):

- imgsearch: ``imgsearch.pipeline.build.build_index`` at ``Settings.from_env().index`` (its
  default engine, faiss ``IndexHNSWSQ`` float16), saved, then opened with
  ``imgsearch.ann.open_index(engine, path, view=True)`` as the query function opens it, and
  searched through the same ``AnnIndex``. Two rows: at the ``expansion_search`` matched to
  the others' recall, and at the one Validate would serve (``tune_expansion_search``, as
  ``benchmarks/query.py`` chooses it). A third, cold open only: downloaded from S3 (moto) with
  the query function's ``download_version`` first;
- faiss ``IndexHNSWFlat`` (inner product; the engine of clip-retrieval), ``write_index`` /
  ``read_index``; hnswlib (``ip``), ``save_index`` / ``load_index``;
- LanceDB (a table on local disk, and the same files opened from S3 on a moto endpoint),
  ``IVF_HNSW_SQ`` or ``IVF_PQ`` with refinement (``--lance-index``);
- Chroma (``PersistentClient``, its HNSW); Milvus Lite (a ``.db`` folder, HNSW);
- run only when named: imgsearch on its usearch engine (f16, or i8), imgsearch storing f32, and
  faiss alone memory-mapped (``IO_FLAG_MMAP_IFC``), storing f32 or float16 (``IndexHNSWSQ``).

Each engine's search effort (ef, or LanceDB's nprobes) is swept along a ladder (the curves of
``docs/peers.svg``) and bisected to the least effort whose recall@10 reaches ``TARGET_RECALL``:
its matched setting. Then, at that setting:

- build: seconds (fresh process per build, ``--build-rounds`` rounds, engines taking turns; the
  median) and the index's bytes on disk, counted once the build's process has exited (every
  adapter's ``build`` returns only when the engine has written everything), and again after
  all the opens: an engine that writes more when opened is reported;
- cold open: a fresh interpreter (numpy and onnxruntime, which any CLIP query function loads,
  already imported) imports the engine, opens the saved index (its files read into the page
  cache first, as just after a download) and answers one query; imports
  and open + first query timed apart; ``--cold-rounds`` rounds, engines taking turns, medians;
  its RSS growth from before the import to after answering every query is the memory figure;
- p50/p99 per query, one thread and two (two callers at once), every engine open in its own
  process and answering blocks of queries in turns (``--rounds`` × ``--block``, covering every
  query), so that drift in the shared machine's speed hits them alike.

Every row's recall@10 is that of the answers its figures were timed on (the lowest, where cold
opens and latency both did); a row below ``TARGET_RECALL`` says so. Every figure is also given
as a ratio to imgsearch's (matched). Peers are not in the runtime: they install into
``.venv-peers`` (``make bench-peers``, ``requirements-peers.txt``)::

    make bench-peers ARGS="--sizes 10000"
    .venv-peers/bin/python benchmarks/peers.py --sizes 100000

Prints markdown tables, writes ``benchmarks/results/<--name>.json`` and ``docs/peers.svg``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # _common and index, beside this file
CACHE = ROOT / "benchmarks" / ".cache"
PICTURE = ROOT / "docs" / "peers.svg"
K = 10
DIM = 512
THREADS = 2
TARGET_RECALL = 0.95
CONNECTIVITY = 24
EXPANSION_ADD = int(os.environ.get("PEERS_EXPANSION_ADD", "64"))
"""The peers' graph settings: imgsearch's defaults (checked against its settings at start).
``PEERS_EXPANSION_ADD=96`` in the environment builds the peers with more effort, with
``IMGSEARCH_INDEX_EXPANSION_ADD=96`` for imgsearch."""
HNSW_LADDER = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
SWEEP_PROBES = 200
"""Single queries timed per sweep point (the picture's p50)."""
SWEEP_STOP = 0.995
"""A sweep stops once recall@10 reaches this: the curve's top."""
BUCKET = "bench-peers"
CREDENTIALS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
REGION = "us-east-1"


def _rss_mb() -> float:
    import psutil

    process = psutil.Process()
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total / 2**20


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


# -- engines -------------------------------------------------------------------------------------


class Engine:
    """One engine: build into a folder (returning once everything it writes is on disk), open
    it, set its search effort, search one query (a float32 unit vector)."""

    name = ""
    effort_name = "ef"
    ladder: Sequence[int] = HNSW_LADDER
    built_as: str | None = None
    """Another engine whose folder this one opens (the same files from elsewhere)."""
    prefix = ""
    """With ``built_as``: where in the bucket those files are uploaded for this one to open."""
    settings = ""

    def __init__(self, folder: Path, endpoint: str | None = None) -> None:
        self.folder, self.endpoint = folder, endpoint

    def imports(self) -> None: ...

    def build(self, data: np.ndarray, threads: int) -> None:
        raise NotImplementedError

    def open(self) -> None:
        raise NotImplementedError

    def set_effort(self, effort: int) -> None:
        raise NotImplementedError

    def search(self, query: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def search_many(self, queries: np.ndarray) -> np.ndarray:
        return np.stack([_padded(self.search(q)) for q in queries])

    def index_bytes(self) -> int:
        """The bytes on disk of what ``open`` reads."""
        return folder_bytes(self.folder)


def _padded(ids: Any) -> np.ndarray:
    row = np.full(K, -1, dtype=np.int64)
    found = np.asarray(ids, dtype=np.int64)[:K]
    row[: len(found)] = found
    return row


class Imgsearch(Engine):
    name = "imgsearch"

    def imports(self) -> None:
        global open_index
        import importlib

        import onnxruntime  # noqa: F401  (before usearch: see imgsearch/__init__.py)

        from imgsearch.ann import open_index

        # The engine's library, which ``open_index`` would import on first use.
        importlib.import_module(f"imgsearch.ann.{self.index_settings().engine}_index")

    @property
    def path(self) -> Path:
        from imgsearch.catalog.layout import index_file

        return self.folder / index_file(self.index_settings().engine)

    @property
    def settings(self) -> str:  # type: ignore[override]
        s = self.index_settings()
        return f"{s.engine} {s.dtype}, M={s.connectivity}, ef_add={s.expansion_add}, view"

    engine: str | None = None
    dtype: str | None = None
    """An engine or scalar type other than the configured one (the variants below)."""

    def index_settings(self) -> Any:
        import dataclasses

        from imgsearch.core.config import Settings

        settings = Settings.from_env().index
        chosen = {"engine": self.engine, "dtype": self.dtype}
        return dataclasses.replace(settings, **{k: v for k, v in chosen.items() if v})

    def build(self, data: np.ndarray, threads: int) -> None:
        from imgsearch.catalog.keytable import KeyTable
        from imgsearch.catalog.layout import KEYS_FILE
        from imgsearch.pipeline.build import build_index

        ids = np.arange(len(data), dtype=np.int64)
        index = build_index(data, ids, self.index_settings(), threads)
        index.save(self.path)
        KeyTable.write(self.folder / KEYS_FILE, ids, [f"images/{i:08d}.jpg" for i in ids])

    def open(self) -> None:
        self.index = open_index(self.index_settings().engine, self.path, view=True)

    def set_effort(self, effort: int) -> None:
        self.index.expansion_search = effort

    def search(self, query: np.ndarray) -> np.ndarray:
        return self.index.search(query, K, threads=1).row(0)[0]

    def search_many(self, queries: np.ndarray) -> np.ndarray:
        return self.index.search(queries, K, threads=THREADS).ids

    def index_bytes(self) -> int:
        return self.path.stat().st_size


class ImgsearchUsearch(Imgsearch):
    """imgsearch on its other engine (``IMGSEARCH_INDEX_ENGINE=usearch``): not run by default."""

    name = "imgsearch (usearch)"
    engine = "usearch"


class ImgsearchF32(Imgsearch):
    """imgsearch's index storing float32 (``IMGSEARCH_INDEX_DTYPE=f32``): not run by default."""

    name = "imgsearch f32"
    dtype = "f32"


class ImgsearchI8(Imgsearch):
    """imgsearch on usearch storing int8 (``IMGSEARCH_INDEX_DTYPE=i8``): not run by default."""

    name = "imgsearch i8"
    engine = "usearch"
    dtype = "i8"


class ImgsearchS3(Imgsearch):
    """The query function's cold path: ``download_version`` from S3 into /tmp, then open."""

    name = "imgsearch (S3)"
    built_as = "imgsearch"
    version = "peers"
    prefix = f"indexes/{version}"

    def imports(self) -> None:
        super().imports()
        global boto3, download_version
        import boto3

        from imgsearch.query.serving import download_version

    def open(self) -> None:
        import tempfile

        from imgsearch.catalog.current import CurrentIndex
        from imgsearch.catalog.keytable import KeyTable
        from imgsearch.catalog.layout import KEYS_FILE

        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, **CREDENTIALS)
        self._cache = tempfile.TemporaryDirectory()
        engine = self.index_settings().engine
        current = CurrentIndex(version=self.version, model="", count=0, built_at="", engine=engine)
        directory = download_version(s3, BUCKET, "indexes/", current, self._cache.name)
        self.index = open_index(engine, directory / self.path.name, view=True)
        self.keys = KeyTable.open(directory / KEYS_FILE)


class FaissHnsw(Engine):
    name = "faiss HNSW"
    settings = f"IndexHNSWFlat f32 IP, M={CONNECTIVITY}, efConstruction={EXPANSION_ADD}"
    mapped = False
    """Open with ``IO_FLAG_MMAP_IFC``: the vectors and neighbor lists memory-mapped, not read in."""

    def imports(self) -> None:
        global faiss
        import faiss

    def new_index(self) -> Any:
        return faiss.IndexHNSWFlat(DIM, CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)

    def build(self, data: np.ndarray, threads: int) -> None:
        faiss.omp_set_num_threads(threads)
        index = self.new_index()
        index.hnsw.efConstruction = EXPANSION_ADD
        if not index.is_trained:  # a scalar quantizer's ranges (fp16 has none to learn)
            index.train(np.ascontiguousarray(data[:1000], dtype=np.float32))
        for begin in range(0, len(data), 65_536):
            index.add(np.ascontiguousarray(data[begin : begin + 65_536], dtype=np.float32))
        faiss.write_index(index, str(self.folder / "index.faiss"))

    def open(self) -> None:
        faiss.omp_set_num_threads(1)
        flags = faiss.IO_FLAG_MMAP_IFC if self.mapped else 0
        self.index = faiss.read_index(str(self.folder / "index.faiss"), flags)

    def set_effort(self, effort: int) -> None:
        self.index.hnsw.efSearch = effort

    def search(self, query: np.ndarray) -> np.ndarray:
        return self.index.search(query.reshape(1, -1), K)[1][0]

    def search_many(self, queries: np.ndarray) -> np.ndarray:
        faiss.omp_set_num_threads(THREADS)
        try:
            return self.index.search(queries, K)[1]
        finally:
            faiss.omp_set_num_threads(1)


class FaissHnswMmap(FaissHnsw):
    """faiss's own answer to a slow cold open: the same file, memory-mapped: not run by
    default."""

    name = "faiss HNSW mmap"
    built_as = FaissHnsw.name
    mapped = True


class FaissHnswSq(FaissHnsw):
    """faiss storing what imgsearch stores (float16), memory-mapped: not run by default."""

    name = "faiss HNSWSQ fp16 mmap"
    mapped = True
    settings = f"IndexHNSWSQ fp16 IP, M={CONNECTIVITY}, efConstruction={EXPANSION_ADD}, mmap"

    def new_index(self) -> Any:
        return faiss.IndexHNSWSQ(
            DIM, faiss.ScalarQuantizer.QT_fp16, CONNECTIVITY, faiss.METRIC_INNER_PRODUCT
        )


class Hnswlib(Engine):
    name = "hnswlib"
    settings = f"ip f32, M={CONNECTIVITY}, ef_construction={EXPANSION_ADD}"

    def imports(self) -> None:
        global hnswlib
        import hnswlib

    def build(self, data: np.ndarray, threads: int) -> None:
        index = hnswlib.Index(space="ip", dim=DIM)
        index.init_index(max_elements=len(data), M=CONNECTIVITY, ef_construction=EXPANSION_ADD)
        for begin in range(0, len(data), 65_536):
            rows = np.ascontiguousarray(data[begin : begin + 65_536], dtype=np.float32)
            index.add_items(rows, np.arange(begin, begin + len(rows)), num_threads=threads)
        index.save_index(str(self.folder / "index.hnswlib"))

    def open(self) -> None:
        self.index = hnswlib.Index(space="ip", dim=DIM)
        self.index.load_index(str(self.folder / "index.hnswlib"))

    def set_effort(self, effort: int) -> None:
        self.index.set_ef(max(effort, K))

    def search(self, query: np.ndarray) -> np.ndarray:
        return self.index.knn_query(query, k=K, num_threads=1)[0][0]

    def search_many(self, queries: np.ndarray) -> np.ndarray:
        return self.index.knn_query(queries, k=K, num_threads=THREADS)[0].astype(np.int64)


class Chroma(Engine):
    name = "Chroma"
    settings = f"PersistentClient, hnsw cosine, max_neighbors={CONNECTIVITY}, "
    settings += f"ef_construction={EXPANSION_ADD}"
    collection = "vectors"

    def imports(self) -> None:
        global chromadb
        import chromadb

    def build(self, data: np.ndarray, threads: int) -> None:
        client = chromadb.PersistentClient(path=str(self.folder))
        configuration = {
            "hnsw": {
                "space": "cosine",
                "max_neighbors": CONNECTIVITY,
                "ef_construction": EXPANSION_ADD,
                "num_threads": threads,
            }
        }
        collection = client.create_collection(
            self.collection, configuration=configuration, embedding_function=None
        )
        batch = client.get_max_batch_size()
        for begin in range(0, len(data), batch):
            rows = np.asarray(data[begin : begin + batch], dtype=np.float32)
            collection.add(ids=[str(i) for i in range(begin, begin + len(rows))], embeddings=rows)
        collection.query(query_embeddings=rows[:1], n_results=K, include=[])

    def open(self) -> None:
        self.client_ = chromadb.PersistentClient(path=str(self.folder))
        self.collection_ = self.client_.get_collection(self.collection, embedding_function=None)

    def set_effort(self, effort: int) -> None:
        """Persisted, and loaded again: a loaded index keeps the ef_search it was loaded with.
        The old client is closed first: dropping it from chromadb's cache alone left its index in
        memory, and a 1M sweep's worker grew to 24 GB and was killed."""
        if self.collection_.configuration["hnsw"]["ef_search"] == effort:
            return
        self.collection_.modify(configuration={"hnsw": {"ef_search": effort}})
        self.client_.close()
        self.open()

    def search(self, query: np.ndarray) -> np.ndarray:
        found = self.collection_.query(query_embeddings=query[None], n_results=K, include=[])
        return np.array([int(i) for i in found["ids"][0]], dtype=np.int64)

    def search_many(self, queries: np.ndarray) -> np.ndarray:
        rows = []
        for begin in range(0, len(queries), 100):
            found = self.collection_.query(
                query_embeddings=queries[begin : begin + 100], n_results=K, include=[]
            )
            rows += [_padded([int(i) for i in ids]) for ids in found["ids"]]
        return np.stack(rows)


class MilvusLite(Engine):
    name = "Milvus Lite"
    settings = f"HNSW COSINE, M={CONNECTIVITY}, efConstruction={EXPANSION_ADD}"
    collection = "vectors"

    def imports(self) -> None:
        global pymilvus
        import pymilvus

    @property
    def uri(self) -> str:
        return str(self.folder / "milvus.db")

    def build(self, data: np.ndarray, threads: int) -> None:
        from pymilvus import DataType, MilvusClient

        client = MilvusClient(self.uri)
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
        params = client.prepare_index_params()
        params.add_index(
            field_name="vector",
            index_type="HNSW",
            metric_type="COSINE",
            params={"M": CONNECTIVITY, "efConstruction": EXPANSION_ADD},
        )
        client.create_collection(self.collection, schema=schema, index_params=params)
        for begin in range(0, len(data), 10_000):
            rows = np.asarray(data[begin : begin + 10_000], dtype=np.float32)
            client.insert(
                self.collection,
                [{"id": begin + i, "vector": row} for i, row in enumerate(rows)],
            )
        client.flush(self.collection)
        client.load_collection(self.collection)
        client.search(self.collection, data=[rows[0]], limit=K)
        client.close()
        self.stop_server()

    def stop_server(self) -> None:
        """Stop the in-process server of ``self.uri``. Milvus Lite compacts the flushed segments
        and builds their HNSW files in a background thread, which a client's ``close`` leaves
        running; stopping the server waits for it (else it runs on at exit, after the build was
        timed and measured)."""
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(self.uri)

    def open(self) -> None:
        self.client = pymilvus.MilvusClient(self.uri)
        self.client.load_collection(self.collection)

    def set_effort(self, effort: int) -> None:
        self.ef = max(effort, K)

    def _search(self, queries: Sequence[np.ndarray]) -> list[np.ndarray]:
        found = self.client.search(
            self.collection,
            data=list(queries),
            limit=K,
            search_params={"metric_type": "COSINE", "params": {"ef": self.ef}},
        )
        return [np.array([hit["id"] for hit in hits], dtype=np.int64) for hits in found]

    def search(self, query: np.ndarray) -> np.ndarray:
        return self._search([query])[0]

    def search_many(self, queries: np.ndarray) -> np.ndarray:
        rows = []
        for begin in range(0, len(queries), 100):
            rows += [_padded(ids) for ids in self._search(queries[begin : begin + 100])]
        return np.stack(rows)


class Lance(Engine):
    name = "LanceDB"
    table = "vectors"
    kind = os.environ.get("PEERS_LANCE_INDEX", "IVF_HNSW_SQ")
    refine = 5
    """IVF_PQ's refine_factor: PQ codes alone do not reach the target recall."""

    def __init__(self, folder: Path, endpoint: str | None = None) -> None:
        super().__init__(folder, endpoint)
        if self.kind == "IVF_PQ":
            self.effort_name, self.ladder = "nprobes", [1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128]

    @property
    def settings(self) -> str:  # type: ignore[override]
        if self.kind == "IVF_PQ":
            return f"IVF_PQ cosine, {DIM // 8} sub-vectors, refine_factor={self.refine}"
        return f"IVF_HNSW_SQ cosine, m={CONNECTIVITY}, ef_construction={EXPANSION_ADD}"

    def imports(self) -> None:
        global lancedb, pa
        import lancedb
        import pyarrow as pa

    def partitions(self, n: int) -> int:
        # IVF_HNSW: few big partitions, each a graph; IVF_PQ: ~sqrt(n), LanceDB's guidance.
        return max(1, n // 100_000) if self.kind == "IVF_HNSW_SQ" else max(1, int(math.sqrt(n)))

    def build(self, data: np.ndarray, threads: int) -> None:
        db = lancedb.connect(str(self.folder))
        schema = pa.schema(
            [pa.field("id", pa.int64()), pa.field("vector", pa.list_(pa.float32(), DIM))]
        )

        def batches() -> Any:
            for begin in range(0, len(data), 65_536):
                rows = np.asarray(data[begin : begin + 65_536], dtype=np.float32)
                yield pa.record_batch(
                    [
                        pa.array(np.arange(begin, begin + len(rows))),
                        pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), DIM),
                    ],
                    schema=schema,
                )

        table = db.create_table(self.table, batches(), schema=schema)
        options: dict[str, Any] = {"metric": "cosine", "index_type": self.kind}
        options["num_partitions"] = self.partitions(len(data))
        if self.kind == "IVF_PQ":
            options["num_sub_vectors"] = DIM // 8
        else:
            options.update(m=CONNECTIVITY, ef_construction=EXPANSION_ADD)
        table.create_index(**options)

    def connect(self) -> Any:
        return lancedb.connect(str(self.folder))

    def open(self) -> None:
        self.table_ = self.connect().open_table(self.table)
        self.probes = self.partitions(self.table_.count_rows())

    def set_effort(self, effort: int) -> None:
        self.effort = effort

    def search(self, query: np.ndarray) -> np.ndarray:
        search = self.table_.search(query).distance_type("cosine").limit(K).select(["id"])
        if self.kind == "IVF_PQ":
            search = search.nprobes(self.effort).refine_factor(self.refine)
        else:
            search = search.nprobes(self.probes).ef(max(self.effort, K))
        return search.to_arrow()["id"].to_numpy()


class LanceS3(Lance):
    name = "LanceDB (S3)"
    built_as = "LanceDB"
    prefix = "lance"

    def connect(self) -> Any:
        options = {
            "aws_endpoint": self.endpoint,
            "aws_region": REGION,
            "allow_http": "true",
            **CREDENTIALS,
        }
        return lancedb.connect(f"s3://{BUCKET}/{self.prefix}", storage_options=options)


ENGINES: dict[str, type[Engine]] = {
    e.name: e
    for e in (Imgsearch, ImgsearchS3, FaissHnsw, Hnswlib, Lance, LanceS3, Chroma, MilvusLite)
}
VARIANTS: dict[str, type[Engine]] = {
    e.name: e for e in (ImgsearchUsearch, ImgsearchF32, ImgsearchI8, FaissHnswMmap, FaissHnswSq)
}
"""Run only when named (``--engines``): imgsearch on its other engine and scalar types, and
faiss alone, memory-mapped, storing f32 or float16."""
ALL = ENGINES | VARIANTS
SERVED = "imgsearch (served)"
"""The latency row of imgsearch at the expansion_search Validate would serve."""


def engine(name: str, work: Path, endpoint: str | None = None) -> Engine:
    cls = ALL[name]
    return cls(work / (cls.built_as or name).replace(" ", "_"), endpoint)


# -- workers: one fresh interpreter each --------------------------------------------------------


def load(work: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.load(work / "data.npy", mmap_mode="r"),
        np.load(work / "queries.npy"),
        np.load(work / "truth.npy"),
    )


def recall(found: dict[int, Sequence[int]], truth: np.ndarray) -> float:
    """recall@10 of the answers ``found`` (ids by query number), as ``index.py`` counts it."""
    from index import recall as index_recall

    rows = sorted(found)
    return index_recall(np.array([found[i] for i in rows]), truth[rows])


def worker_build(args: argparse.Namespace) -> dict[str, Any]:
    from index import PeakRss

    import imgsearch  # noqa: F401  (onnxruntime before usearch)

    data, _, _ = load(args.work)
    peer = engine(args.engine, args.work)
    peer.imports()
    shutil.rmtree(peer.folder, ignore_errors=True)
    peer.folder.mkdir(parents=True)
    with PeakRss() as memory:
        started, cpu = time.perf_counter(), time.process_time()
        peer.build(data, THREADS)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "build_seconds": seconds,
        "build_cpu_seconds": cpu,
        "build_peak_rss_mb": memory.growth_mb,
        "settings": peer.settings,
    }


def timed_p50(peer: Engine, queries: np.ndarray, probes: int = SWEEP_PROBES) -> float:
    for query in queries[:5]:
        peer.search(query)
    timings = []
    for query in queries[:probes]:
        started = time.perf_counter()
        peer.search(query)
        timings.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(timings, 50))


def least_effort(at: Callable[[int], float], tried: dict[int, float]) -> int | None:
    """The least effort whose recall reaches the target, bisecting between the efforts ``tried``
    around it (recall grows with effort), never below the least tried (the ladder's first step:
    for the HNSW engines ef=k, which any smaller ef means); ``None`` when none reached it."""
    above = [e for e in tried if tried[e] >= TARGET_RECALL]
    if not above:
        return None
    high = min(above)
    low = max([e for e in tried if e < high], default=high)
    while high - low > 1:
        middle = (low + high) // 2
        if at(middle) >= TARGET_RECALL:
            high = middle
        else:
            low = middle
    return high


def served_effort(peer: Imgsearch, data: np.ndarray) -> tuple[int, dict[int, float]]:
    """The expansion_search Validate would serve this index at, and its recalls on the way."""
    from imgsearch.core.config import Settings
    from imgsearch.pipeline.validate import expansion_ladder, noisy_queries, tune_expansion_search

    settings = Settings.from_env()
    ids = np.arange(len(data), dtype=np.int64)
    probes = noisy_queries(data, ids, settings.gate.sample_queries, np.random.default_rng(1))
    ladder = expansion_ladder(settings.index)
    return tune_expansion_search(
        peer.index, data, ids, probes, ladder, settings.gate.tune_floor, THREADS
    )


def worker_sweep(args: argparse.Namespace) -> dict[str, Any]:
    import imgsearch  # noqa: F401

    data, queries, truth = load(args.work)
    peer = engine(args.engine, args.work)
    peer.imports()
    peer.open()
    recalls: dict[int, float] = {}

    def at(effort: int) -> float:
        if effort not in recalls:
            peer.set_effort(effort)
            found = dict(enumerate(peer.search_many(queries).tolist()))
            recalls[effort] = recall(found, truth)
            print(f"  {peer.name} {peer.effort_name}={effort}: {recalls[effort]:.4f}", flush=True)
        return recalls[effort]

    curve = []
    for effort in peer.ladder:
        reached = at(effort)
        curve.append({"effort": effort, "recall": reached, "p50_ms": timed_p50(peer, queries)})
        if reached >= SWEEP_STOP:
            break
    matched = least_effort(at, dict(recalls))
    if matched is None:
        matched = max(recalls)
        print(f"  {peer.name}: recall@10 {TARGET_RECALL} not reached on the ladder", flush=True)
    if matched not in [p["effort"] for p in curve]:
        peer.set_effort(matched)
        curve.append({"effort": matched, "recall": at(matched), "p50_ms": timed_p50(peer, queries)})
        curve.sort(key=lambda p: p["effort"])
    peer.set_effort(matched)  # what a later open finds, where the engine persists it
    result: dict[str, Any] = {
        "effort_name": peer.effort_name,
        "curve": curve,
        "recalls": {str(k): v for k, v in sorted(recalls.items())},
        "matched_effort": matched,
        "matched_recall": recalls[matched],
    }
    if type(peer) is Imgsearch:
        chosen, tuned = served_effort(peer, data)
        result.update(
            served_effort=chosen,
            served_recall=at(chosen),
            validate_recalls={str(k): v for k, v in tuned.items()},
        )
    return result


def worker_breakdown(args: argparse.Namespace) -> dict[str, Any]:
    """Where the usearch engine's single-query time goes at ``--effort``: the index as served
    (the ``AnnIndex`` over a ``view``), usearch's own ``Index`` over the same view, the same
    file loaded into memory (``view=False``), the compiled search alone (no ``prepare``, no
    Python wrapper) and ``prepare`` alone. The cases take turns by blocks of 100 queries, each
    case a different block at a time (a query's path through the graph, once in the CPU's
    caches, would flatter the case that repeats it), every case all the queries once; p50 per
    query, ms."""
    from usearch.index import Index, ScalarKind

    import imgsearch  # noqa: F401  (onnxruntime before usearch)
    from imgsearch.core.vectors import prepare

    _, queries, _ = load(args.work)
    served = engine(args.engine, args.work)
    served.imports()
    served.open()
    served.set_effort(args.effort)
    view = Index.restore(str(served.path), view=True)
    loaded = Index.restore(str(served.path), view=False)
    view.expansion_search = loaded.expansion_search = args.effort
    dtype = view.dtype
    prepared = prepare(queries, dtype)
    compiled = view._compiled.search_many
    cases: dict[str, Callable[[int], Any]] = {
        "view, as served (AnnIndex.search)": lambda i: served.search(queries[i]),
        "view, usearch's Index.search": lambda i: view.search(prepare(queries[i], dtype), K),
        "loaded into memory (view=False)": lambda i: loaded.search(prepare(queries[i], dtype), K),
        "view, compiled search alone": lambda i: compiled(
            prepared[i][None], count=K, exact=False, threads=1, dtype=ScalarKind.Unknown
        ),
        "prepare alone": lambda i: prepare(queries[i], dtype),
    }
    for i in range(20):
        for run in cases.values():
            run(i)
    blocks = len(queries) // 100
    timings: dict[str, list[float]] = {case: [] for case in cases}
    for round_ in range(blocks):
        for offset, (case, run) in enumerate(cases.items()):
            first = ((round_ + offset) % blocks) * 100
            for i in range(first, first + 100):
                started = time.perf_counter()
                run(i)
                timings[case].append((time.perf_counter() - started) * 1000)
    return {case: float(np.percentile(values, 50)) for case, values in timings.items()}


def worker_cold(args: argparse.Namespace) -> dict[str, Any]:
    """A cold open's figures, and every query's answers (scored by the caller)."""
    baseline = _rss_mb()  # numpy, onnxruntime (any CLIP query function loads it) and psutil
    _, queries, _ = load(args.work)
    peer = engine(args.engine, args.work, args.endpoint)
    started = time.perf_counter()
    peer.imports()
    imported = time.perf_counter()
    peer.open()
    peer.set_effort(args.effort)
    first = peer.search(queries[0])
    answered = time.perf_counter()
    rss_open = _rss_mb()
    found = np.stack([_padded(first), *(_padded(peer.search(q)) for q in queries[1:])])
    return {
        "import_seconds": imported - started,
        "open_first_query_seconds": answered - imported,
        "rss_growth_open_mb": rss_open - baseline,
        "rss_growth_mb": _rss_mb() - baseline,
        "found": found.tolist(),
    }


def worker_serve(args: argparse.Namespace) -> dict[str, Any]:
    """Open one engine at ``--effort``, then answer blocks of queries as told on stdin
    (``<first query> <count> <threads>``), a line of per-query milliseconds for each, so that
    a coordinator can make the engines take turns, each in its own process."""
    import imgsearch  # noqa: F401  (onnxruntime before usearch)

    _, queries, _ = load(args.work)
    peer = engine(args.engine, args.work, args.endpoint)
    peer.imports()
    peer.open()
    peer.set_effort(args.effort)
    for query in queries[:20]:
        peer.search(query)
    found: dict[int, list[int]] = {}

    def run(chosen: list[int]) -> list[float]:
        timings = []
        for i in chosen:
            started = time.perf_counter()
            ids = peer.search(queries[i])
            timings.append((time.perf_counter() - started) * 1000)
            found[i] = _padded(ids).tolist()
        return timings

    print("READY", flush=True)
    pool = ThreadPoolExecutor(2)
    for line in sys.stdin:
        if not line.strip():
            break
        first, count, threads = map(int, line.split())
        chosen = [(first + j) % len(queries) for j in range(count)]
        started = time.perf_counter()
        if threads == 1:
            timings = run(chosen)
        else:
            parts = list(pool.map(run, [chosen[k::threads] for k in range(threads)]))
            timings = [t for part in parts for t in part]
        wall = time.perf_counter() - started
        print("BLOCK " + json.dumps({"ms": timings, "wall": wall}), flush=True)
    return {"found": {str(i): ids for i, ids in found.items()}}


WORKER_ENV = {"ANONYMIZED_TELEMETRY": "False", "PYTHONWARNINGS": "ignore", "LANCEDB_LOG": "error"}
"""Chroma's telemetry off; LanceDB's per-query deprecation warnings quiet."""

WORKERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "build": worker_build,
    "sweep": worker_sweep,
    "cold": worker_cold,
    "serve": worker_serve,
    "breakdown": worker_breakdown,
}


def worker_command(kind: str, work: Path, **options: Any) -> list[str]:
    command = [sys.executable, __file__, "--worker", kind, "--work", str(work)]
    for key, value in options.items():
        if value is not None:
            command += [f"--{key}", str(value)]
    return command


def run_worker(kind: str, work: Path, **options: Any) -> dict[str, Any]:
    command = worker_command(kind, work, **options)
    env = {**os.environ, **WORKER_ENV}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    for line in done.stdout.splitlines():
        if not line.startswith("RESULT "):
            print(line, flush=True)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} {options} failed:\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


# -- orchestrator --------------------------------------------------------------------------------


def interleaved_latency(
    work: Path, efforts: dict[str, int], endpoint: str, rounds: int, block: int
) -> dict[str, dict[str, Any]]:
    """p50/p99 per query of each engine, on one thread and two: one process per engine, all
    open at once, answering ``block`` queries in turns for ``rounds`` rounds; and the recall@10
    of the answers it gave while timed."""
    env = {**os.environ, **WORKER_ENV}
    processes: dict[str, subprocess.Popen[str]] = {}
    for name, effort in efforts.items():
        source = Imgsearch.name if name == SERVED else name
        command = worker_command("serve", work, engine=source, effort=effort, endpoint=endpoint)
        processes[name] = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
    for name, process in processes.items():
        while (line := process.stdout.readline()) and not line.startswith("READY"):  # type: ignore[union-attr]
            pass
        if not line:
            raise RuntimeError(f"{name} did not start serving")

    def ask(name: str, first: int, threads: int) -> dict[str, Any]:
        process = processes[name]
        process.stdin.write(f"{first} {block} {threads}\n")  # type: ignore[union-attr]
        process.stdin.flush()  # type: ignore[union-attr]
        while not (line := process.stdout.readline()).startswith("BLOCK "):  # type: ignore[union-attr]
            if not line:
                raise RuntimeError(f"{name} stopped serving")
        return json.loads(line[len("BLOCK ") :])

    timings: dict[tuple[str, int], list[float]] = {(n, t): [] for n in efforts for t in (1, 2)}
    qps: dict[str, list[float]] = {name: [] for name in efforts}
    for round_, order in enumerate(rotations(list(efforts), rounds)):
        for threads in (1, 2):
            for name in order:
                answer = ask(name, round_ * block, threads)
                timings[name, threads] += answer["ms"]
                if threads == 2:
                    qps[name].append(block / answer["wall"])
    truth = np.load(work / "truth.npy")
    result = {}
    for name, process in processes.items():
        out, _ = process.communicate("\n")
        line = next(x for x in out.splitlines() if x.startswith("RESULT "))
        found = json.loads(line[len("RESULT ") :])["found"]
        result[name] = {
            "p50_ms_1_thread": float(np.percentile(timings[name, 1], 50)),
            "p99_ms_1_thread": float(np.percentile(timings[name, 1], 99)),
            "p50_ms_2_threads": float(np.percentile(timings[name, 2], 50)),
            "p99_ms_2_threads": float(np.percentile(timings[name, 2], 99)),
            "qps_2_threads": float(np.median(qps[name])),
            "queries_timed": len(timings[name, 1]),
            "timed_recall_at_10": recall({int(i): ids for i, ids in found.items()}, truth),
        }
    return result


def prepare_data(n: int, queries: int) -> Path:
    """Vectors, held-out queries and exact ground truth in ``benchmarks/.cache/peers-<n>/``."""
    work = CACHE / f"peers-{n}"
    files = [work / f"{name}.npy" for name in ("data", "queries", "truth")]
    if all(f.is_file() for f in files) and len(np.load(files[1], mmap_mode="r")) == queries:
        return work
    from index import clustered
    from usearch.index import search as exact_search

    import imgsearch  # noqa: F401

    print(f"generating {n:,} x {DIM} clustered vectors and {queries} queries ...", flush=True)
    data, held_out = clustered(n, queries, seed=n)
    started = time.perf_counter()
    truth = exact_search(data, held_out, K, "cos", exact=True, threads=THREADS).keys
    print(f"  exact ground truth in {time.perf_counter() - started:.1f} s", flush=True)
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "data.npy", data)
    np.save(work / "queries.npy", held_out)
    np.save(work / "truth.npy", truth.astype(np.int64))
    return work


def upload(s3: Any, folder: Path, prefix: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder).as_posix()}")


def rotations(names: list[str], rounds: int) -> list[list[str]]:
    """Each round's order: the engines taking turns, each starting a round in its turn."""
    if not names:
        return []
    return [names[r % len(names) :] + names[: r % len(names)] for r in range(rounds)]


def ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0:
        return "–"
    return f"{value / base:.2f}"


def warm(folder: Path) -> None:
    """Read every file of ``folder`` into the page cache: a cold open then starts where the
    query function's does, just after its download, whatever the machine evicted since the
    build (this one reclaims idle pages)."""
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                while f.read(1 << 24):
                    pass


def attempt(failed: dict[str, str], kind: str, work: Path, name: str, **options: Any) -> Any:
    """``run_worker(kind, ...)`` for engine ``name``; a peer that fails is noted in ``failed``
    (and ``None`` returned), imgsearch failing ends the run: it is every ratio's base."""
    try:
        return run_worker(kind, work, engine=name, **options)
    except RuntimeError as exc:
        if name == Imgsearch.name:
            raise
        failed[name] = f"{kind}: {str(exc)[-1500:]}"
        print(f"  {name} failed: {failed[name]}", flush=True)
        return None


def build_all(
    work: Path, names: list[str], rounds: int, failed: dict[str, str], reused: dict[str, Any]
) -> dict[str, list[dict[str, Any]]]:
    """``rounds`` builds of each engine not in ``reused``, engines taking turns; each with its
    index's bytes on disk, counted once the build's process has exited."""
    builds = {name: list(reused.get(name, [])) for name in names}
    for order in rotations([x for x in names if not builds[x]], rounds):
        for name in [x for x in order if x not in failed]:
            print(f"{work.name}: building {name}", flush=True)
            if built := attempt(failed, "build", work, name):
                built["index_bytes"] = engine(name, work).index_bytes()
                builds[name].append(built)
                print(f"  {built['build_seconds']:.1f} s, {built['index_bytes']:,} B", flush=True)
    return {name: runs for name, runs in builds.items() if name not in failed}


def sweep_all(
    work: Path, names: list[str], failed: dict[str, str], reused: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    sweeps = {name: reused[name] for name in names if name in reused}
    for name in [x for x in names if x not in sweeps]:
        print(f"{work.name}: sweeping {name}", flush=True)
        if swept := attempt(failed, "sweep", work, name):
            sweeps[name] = swept
    return sweeps


def cold_opens(
    work: Path,
    names: list[str],
    efforts: dict[str, int],
    endpoint: str,
    rounds: int,
    failed: dict[str, str],
) -> dict[str, list[dict[str, Any]]]:
    """``rounds`` cold opens of each engine, engines taking turns, each scored by the recall@10
    of its answers to every query."""
    truth = np.load(work / "truth.npy")
    cold: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for order in rotations(names, rounds):
        for name in [x for x in order if x not in failed]:
            if not ALL[name].prefix:  # files on this disk, not in the bucket
                warm(engine(name, work).folder)
            options = {"effort": efforts[name], "endpoint": endpoint}
            if opened := attempt(failed, "cold", work, name, **options):
                opened["cold_recall_at_10"] = recall(dict(enumerate(opened.pop("found"))), truth)
                cold[name].append(opened)
    print(f"{work.name}: cold opens {json.dumps(cold)}", flush=True)
    return {name: runs for name, runs in cold.items() if name not in failed}


def settled_sizes(
    work: Path, names: list[str], builds: dict[str, list[dict[str, Any]]]
) -> dict[str, int]:
    """Each index's bytes on disk after every open, noting any that differ from those after its
    build: an engine that goes on writing once built would make the build's figure too small."""
    sizes = {}
    for name in names:
        sizes[name] = engine(name, work).index_bytes()
        if sizes[name] != (built := builds[name][-1]["index_bytes"]):
            print(
                f"note: {name}'s index was {built:,} B after its build, {sizes[name]:,} B "
                "after the opens",
                flush=True,
            )
    return sizes


def source_of(name: str) -> str:
    """The engine whose build and sweep a row's figures stand on."""
    return Imgsearch.name if name == SERVED else (ALL[name].built_as or name)


def make_row(name: str, measured: dict[str, Any]) -> dict[str, Any]:
    """One row of the tables: the build and sweep of ``name``'s source (the engine whose files
    it opens), its own cold opens and latency, and whether the recall@10 of the answers those
    timed reaches the target."""
    source = source_of(name)
    built, sweep = measured["builds"][source], measured["sweeps"][source]
    row: dict[str, Any] = {
        "engine": name,
        "settings": built[-1]["settings"],
        "effort_name": sweep["effort_name"],
        "effort": measured["efforts"][name],
        "sweep_recall_at_10": sweep["served_recall" if name == SERVED else "matched_recall"],
        "build_seconds": float(np.median([b["build_seconds"] for b in built])),
        "build_peak_rss_mb": float(np.median([b["build_peak_rss_mb"] for b in built])),
        "index_mb": built[-1]["index_bytes"] / 2**20,
        "index_mb_after_opens": measured["settled"][source] / 2**20,
    }
    if cold := measured["cold"].get(name):
        row |= {key: float(np.median([c[key] for c in cold])) for key in cold[0]}
    row |= measured["latency"].get(name, {})
    timed = [row[key] for key in ("cold_recall_at_10", "timed_recall_at_10") if key in row]
    row["recall_at_10"] = min(timed)
    row["target_met"] = row["recall_at_10"] >= TARGET_RECALL
    return row


def run_size(
    n: int, args: argparse.Namespace, endpoint: str, s3: Any, reused: dict[str, Any] | None
) -> dict[str, Any]:
    """Build, sweep, cold-open and time every engine at ``n`` vectors; with ``reused`` (an
    earlier result at ``n``: ``--reuse``), its builds and sweeps stand and the indexes in the
    cache are opened again."""
    work = prepare_data(n, args.queries)
    started = time.perf_counter()
    failed: dict[str, str] = {}
    reused = reused or {"builds": {}, "sweeps": {}}
    names = [e for e in args.engines if ALL[e].built_as is None]
    builds = build_all(work, names, args.build_rounds, failed, reused["builds"])
    sweeps = sweep_all(work, list(builds), failed, reused["sweeps"])
    names = list(sweeps)
    variants = [e for e in args.engines if ALL[e].built_as in names]
    for variant in [v for v in variants if ALL[v].prefix]:
        upload(s3, engine(source_of(variant), work).folder, ALL[variant].prefix)
    efforts = {name: sweeps[name]["matched_effort"] for name in names}
    efforts |= {v: efforts[source_of(v)] for v in variants}
    efforts[SERVED] = sweeps[Imgsearch.name]["served_effort"]
    breakdown = {
        name: run_worker("breakdown", work, engine=name, effort=efforts[name])
        for name in names
        if issubclass(ALL[name], Imgsearch) and ALL[name].engine == "usearch"
    }
    print(f"{work.name}: imgsearch's usearch breakdown, p50 ms: {breakdown}", flush=True)
    cold = cold_opens(work, names + variants, efforts, endpoint, args.cold_rounds, failed)
    timed = [
        Imgsearch.name,
        SERVED,
        *[x for x in cold if x not in (Imgsearch.name, ImgsearchS3.name)],
    ]
    print(f"{work.name}: interleaved latency of {timed}", flush=True)
    latency = interleaved_latency(
        work, {name: efforts[name] for name in timed}, endpoint, args.rounds, args.block
    )
    measured = {
        "builds": builds,
        "sweeps": sweeps,
        "efforts": efforts,
        "cold": cold,
        "latency": latency,
        "settled": settled_sizes(work, names, builds),
    }
    shown = [Imgsearch.name, SERVED, *[x for x in cold if x != Imgsearch.name]]
    return {
        "n": n,
        "queries": args.queries,
        "rows": [make_row(name, measured) for name in shown],
        "curves": {name: sweeps[name]["curve"] for name in names},
        "sweeps": sweeps,
        "builds": builds,
        "cold_opens": cold,
        "imgsearch_breakdown_p50_ms": breakdown,
        "failed": failed,
        "seconds": time.perf_counter() - started,
    }


COLUMNS = [
    ("build s", "build_seconds", "{:.1f}"),
    ("index MB", "index_mb", "{:.1f}"),
    ("import s", "import_seconds", "{:.2f}"),
    ("open + 1st query s", "open_first_query_seconds", "{:.3f}"),
    ("p50 ms 1T", "p50_ms_1_thread", "{:.3f}"),
    ("p99 ms 1T", "p99_ms_1_thread", "{:.3f}"),
    ("p50 ms 2T", "p50_ms_2_threads", "{:.3f}"),
    ("p99 ms 2T", "p99_ms_2_threads", "{:.3f}"),
    ("q/s 2T", "qps_2_threads", "{:.0f}"),
    ("RSS MB", "rss_growth_mb", "{:.0f}"),
]
BELOW = f" (below {TARGET_RECALL})"
"""Marks a row whose recall@10, as timed, misses the target: its figures are not matched."""


def tables(result: dict[str, Any]) -> str:
    from _common import markdown_table

    rows = result["rows"]
    base = rows[0]
    figures = [
        [
            r["engine"],
            r["settings"],
            f"{r['effort_name']}={r['effort']}",
            f"{r['recall_at_10']:.4f}" + ("" if r["target_met"] else BELOW),
            *[fmt.format(r[key]) if r.get(key) is not None else "–" for _, key, fmt in COLUMNS],
        ]
        for r in rows
    ]
    ratios = [
        [
            r["engine"] + ("" if r["target_met"] else BELOW),
            *[ratio(r.get(key), base.get(key)) for _, key, _ in COLUMNS],
        ]
        for r in rows
        if r is not base
    ]
    return (
        f"{result['n']:,} vectors, {result['queries']:,} queries, recall@10 target "
        f"{TARGET_RECALL} (least effort reaching it; recall@10 of the answers timed)\n\n"
        + markdown_table(
            ["engine", "settings", "effort", "recall@10", *[c for c, _, _ in COLUMNS]], figures
        )
        + "\n\nRatio to imgsearch (matched); below 1: the peer is smaller/faster\n\n"
        + markdown_table(["engine", *[c for c, _, _ in COLUMNS]], ratios)
    )


def picture(results: list[dict[str, Any]]) -> str:
    """recall@10 against p50 latency (log scale), one curve per engine and size, as SVG."""
    from imgsearch.monitor import plots

    curves = {
        f"{name} {r['n'] // 1000}k" if len(results) > 1 else name: curve
        for r in results
        for name, curve in r["curves"].items()
    }
    title = "recall@10 against single-query p50, sweeping search effort"
    points = [p for curve in curves.values() for p in curve]
    if not points:
        return plots.document(plots.WIDTH, plots.HEIGHT, title, plots.no_data(title))
    low = math.floor(math.log10(min(p["p50_ms"] for p in points)))
    high = max(low + 1, math.ceil(math.log10(max(p["p50_ms"] for p in points))))
    y_ticks = plots.nice_ticks(max(0.5, min(p["recall"] for p in points)), 1.0)
    colours = dict(zip(curves, cycle(plots.PALETTE), strict=False))
    entries, top = plots.legend([(name, colours[name], "line") for name in curves])
    frame = plots.Frame((low, high), (y_ticks[0], y_ticks[-1]), top)
    x_ticks = [
        (math.log10(m * 10.0**e), f"{m * 10.0**e:g}")
        for e in range(low, high + 1)
        for m in (1, 2, 5)
        if low <= math.log10(m * 10.0**e) <= high
    ]
    axes = plots.axes(frame, title, x_ticks, y_ticks, "p50 per query, ms (log)", "recall@10")
    elements = [*axes, *entries]
    target = plots.n(frame.y(TARGET_RECALL))
    elements.append(
        f'<line x1="{plots.n(frame.left)}" y1="{target}" x2="{plots.n(frame.right)}" '
        f'y2="{target}" stroke="{plots.MUTED}" stroke-dasharray="4 4"/>'
    )
    for name, curve in curves.items():
        shown = [p for p in curve if p["recall"] >= y_ticks[0]]
        xy = [(frame.x(math.log10(p["p50_ms"])), frame.y(p["recall"])) for p in shown]
        if len(xy) > 1:
            path = " L".join(f"{plots.n(x)},{plots.n(y)}" for x, y in xy)
            elements.append(
                f'<path d="M{path}" fill="none" stroke="{colours[name]}" stroke-width="2"/>'
            )
        elements += [
            f'<circle cx="{plots.n(x)}" cy="{plots.n(y)}" r="2.5" fill="{colours[name]}"/>'
            for x, y in xy
        ]
    return plots.document(plots.WIDTH, plots.HEIGHT, title, elements)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ALL))
    parser.add_argument("--name", default="peers", help="benchmarks/results/<name>.json")
    parser.add_argument("--build-rounds", type=int, default=1)
    parser.add_argument("--cold-rounds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved latency rounds")
    parser.add_argument("--block", type=int, default=100, help="queries per engine per round")
    parser.add_argument("--lance-index", default=Lance.kind, choices=["IVF_HNSW_SQ", "IVF_PQ"])
    parser.add_argument("--no-picture", action="store_true")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the builds and sweeps of benchmarks/results/<name>.json (and the indexes "
        "cached beside them); measure cold opens and latency again",
    )
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--effort", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return args
    if Imgsearch.name not in args.engines:
        parser.error("--engines must include imgsearch: every ratio is to it")
    if args.rounds * args.block < args.queries:
        parser.error(
            "--rounds × --block must cover --queries: each row's recall is that of every "
            "query, as the match was made"
        )
    return args


def earlier_results(args: argparse.Namespace) -> dict[int, dict[str, Any]]:
    """``--reuse``: the earlier results by size, if they were measured as this run asks."""
    if not args.reuse:
        return {}
    previous = json.loads((ROOT / "benchmarks" / "results" / f"{args.name}.json").read_text())
    if previous["lance_index"] != args.lance_index:
        sys.exit(f"--reuse: the earlier run built LanceDB as {previous['lance_index']}")
    results = {r["n"]: r for r in previous["results"]}
    if other := [n for n, r in results.items() if r["queries"] != args.queries]:
        sys.exit(f"--reuse: the earlier run at {other} swept another number of queries")
    return results


def main() -> None:
    args = parse_args()
    if args.worker:
        import onnxruntime  # noqa: F401  (before usearch; and any CLIP query function loads it)
        import psutil  # noqa: F401

        print("RESULT " + json.dumps(WORKERS[args.worker](args)), flush=True)
        return
    os.environ["PEERS_LANCE_INDEX"] = Lance.kind = args.lance_index
    import boto3
    from _common import environment, write_results
    from moto.server import ThreadedMotoServer

    import imgsearch  # noqa: F401
    from imgsearch.core.config import Settings

    settings = Settings.from_env().index
    if (settings.connectivity, settings.expansion_add) != (CONNECTIVITY, EXPANSION_ADD):
        print(
            f"note: imgsearch builds at M={settings.connectivity}, "
            f"ef_add={settings.expansion_add}; the peers at M={CONNECTIVITY}, "
            f"efConstruction={EXPANSION_ADD}"
        )
    earlier = earlier_results(args)
    load_before = [round(x, 2) for x in os.getloadavg()]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)
    s3.create_bucket(Bucket=BUCKET)
    results = []
    try:
        for n in args.sizes:
            result = run_size(n, args, endpoint, s3, earlier.get(n))
            results.append(result)
            print()
            print(tables(result))
            for name, reason in result["failed"].items():
                print(f"- {name} did not run: {reason.strip().splitlines()[-1]}")
            print(f"\n{n:,} took {result['seconds'] / 60:.1f} minutes\n", flush=True)
    finally:
        server.stop()
    env = environment(
        "usearch",
        "faiss-cpu",
        "hnswlib",
        "lancedb",
        "pylance",
        "chromadb",
        "milvus-lite",
        "pymilvus",
        "numpy",
    )
    print(f"CPU: {env['cpu']} ({env['cpu_count']} logical CPUs)")
    path = write_results(
        args.name,
        {
            "environment": env | {"load_average_before": load_before},
            "target_recall": TARGET_RECALL,
            "lance_index": args.lance_index,
            "threads": THREADS,
            "results": results,
        },
    )
    print(f"results: {path}")
    if not args.no_picture:
        PICTURE.write_text(picture(results) + "\n", encoding="utf-8")
        print(f"picture: {PICTURE}")


if __name__ == "__main__":
    main()
