"""The monitor on what simulated users do: the CTR@10 and MRR their clicks imply, a degraded
index (its keys shuffled) flagged against the healthy baseline until the alarm's windows are
full, query drift, and the drift of newly uploaded images (real photographs against the
synthetic corpus) through the embed function. moto for AWS, the real handlers, the usage log's
CloudWatch Logs -> Firehose -> S3 path."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import monitor.app
import numpy as np
import pytest
from imgsearch_devkit.demo.photos import jpeg, photo_jpegs, photographs
from imgsearch_devkit.demo.scenes import KINDS, describes, generate
from ingest_support import embed_stack, sqs_event
from query_support import (
    BUCKET,
    Image,
    LambdaContext,
    demo_model,
    get,
    http_event,
    invoke,
    make_images,
    png,
    query_stack,
)
from usage_support import usage_log

from imgsearch.catalog.current import CurrentIndex, write_current
from imgsearch.catalog.keytable import KeyTable
from imgsearch.catalog.layout import KEYS_FILE, new_version
from imgsearch.catalog.reference import write_reference
from imgsearch.core.clock import now_iso
from imgsearch.core.config import Settings
from imgsearch.core.keys import image_id
from imgsearch.model import embed_images
from imgsearch.monitor.run import metric_values, run_monitor, write_report
from imgsearch.query.http.models import SearchResponse

pytestmark = pytest.mark.slow

QUERIES = [f"{colour} {shape}" for colour, shape in KINDS]
MONITOR = {
    "IMGSEARCH_MONITOR_MIN_SEARCHES": "20",
    "IMGSEARCH_MONITOR_ALARM_WINDOWS": "3",
    "IMGSEARCH_DRIFT_MIN_SAMPLES": "30",
}


@pytest.fixture(scope="module")
def model():
    return demo_model()


@pytest.fixture(scope="module")
def images(model) -> list[Image]:
    return make_images(model, 80, seed=21)


class Users:
    """People who search for a kind of image and click every result that shows it."""

    def __init__(self, handler, images: list[Image]) -> None:
        self.handler = handler
        self.scenes = {image.key: image.scene for image in images}
        self.first_ranks: list[int | None] = []

    def session(self, queries: list[str]) -> None:
        for text in queries:
            answer = SearchResponse(**get(self.handler, "/search", q=text, k="10").json)
            matching = [
                rank
                for rank, result in enumerate(answer.results, start=1)
                if describes(self.scenes[result.key], text)
            ]
            for rank in matching:
                body = json.dumps(
                    {
                        "query_id": answer.query_id,
                        "key": answer.results[rank - 1].key,
                        "event": "click",
                        "rank": rank,
                    }
                )
                reply = invoke(self.handler, _feedback_event(body))
                assert reply.status == 202, reply.text
            self.first_ranks.append(matching[0] if matching else None)

    def implied(self) -> tuple[float, float]:
        """CTR@10 and MRR of what the labels say these users clicked."""
        ranks = self.first_ranks
        ctr = sum(r is not None for r in ranks) / len(ranks)
        mrr = sum(1 / r for r in ranks if r is not None) / len(ranks)
        return ctr, mrr


def _feedback_event(body: str):
    return http_event("POST", "/feedback", body=body, headers={"content-type": "application/json"})


def shuffled_keys(images: list[Image], seed: int) -> bytes:
    """A key table that maps every id to another image's key: an index whose answers are noise."""
    ids = np.array([image_id(i.key) for i in images], dtype=np.int64)
    keys = [i.key for i in images]
    order = np.random.default_rng(seed).permutation(len(keys))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / KEYS_FILE
        KeyTable.write(path, ids, [keys[i] for i in order])
        return path.read_bytes()


def window(stack, stream, users: Users, queries: list[str], rng) -> dict:
    """One window of the users' searches, measured and written as the monitor function does."""
    users.first_ranks.clear()
    start = datetime.now(UTC)
    users.session(queries)
    stream.flush()
    end = datetime.now(UTC)
    run = run_monitor(stack.settings, stack.s3, now=end, start=start, rng=rng)
    write_report(stack.s3, stack.settings, run)
    return run.report


def test_clicks_give_the_ctr_and_mrr_the_labels_imply_and_a_degraded_index_alarms(
    tmp_path: Path, model, images
) -> None:
    with query_stack(tmp_path, model, images, MONITOR) as stack, usage_log(BUCKET) as stream:
        stack.publish()
        handler = stack.load_handler()
        users = Users(handler, images)
        rng = np.random.default_rng(0)
        healthy = window(stack, stream, users, QUERIES[:30], rng)
        ctr, mrr = users.implied()
        (figures,) = healthy["quality"]
        assert figures["searches"] == 30
        assert figures["ctr_at_10"] == pytest.approx(ctr, abs=1e-6)
        assert figures["mrr"] == pytest.approx(mrr, abs=1e-6)
        assert ctr > 0.8 and mrr > 0.5  # the demo model finds colour-and-shape queries
        assert healthy["baseline"] is None and not healthy["degraded"]["flag"]
        assert healthy["counts"]["feedback_joined"] == healthy["counts"]["feedback"] > 0

        stack.publish(files={KEYS_FILE: shuffled_keys(images, seed=4)})
        assert handler.service.refresh_now()
        flags = []
        for n in range(3):
            report = window(stack, stream, users, QUERIES[10 * n : 10 * n + 30], rng)
            degraded_ctr, _ = users.implied()
            assert report["quality"][0]["ctr_at_10"] == pytest.approx(degraded_ctr, abs=1e-6)
            assert report["baseline"]["ctr_at_10"] == pytest.approx(ctr, abs=1e-6)
            flags.append(report["degraded"])
            assert metric_values(report)["QualityDegraded"] == 1
        assert [f["consecutive"] for f in flags] == [1, 2, 3]  # the alarm's 3 windows: ALARM
        assert all({"ctr_at_10", "mrr"} <= set(f["metrics"]) for f in flags)
        # The index that answered each window is named in its figures.
        assert report["quality"][0]["index_version"] != healthy["quality"][0]["index_version"]


def test_what_users_search_for_drifts_when_they_ask_for_other_things(
    tmp_path: Path, model, images
) -> None:
    with query_stack(tmp_path, model, images, MONITOR) as stack, usage_log(BUCKET) as stream:
        stack.publish()
        users = Users(stack.load_handler(), images)
        rng = np.random.default_rng(1)
        pick = np.random.default_rng(7)
        sessions = [list(pick.choice(QUERIES, size=40)) for _ in range(2)]
        same = [window(stack, stream, users, queries, rng) for queries in sessions][-1]
        assert same["drift"]["queries"]["drift"] is False, same["drift"]["queries"]
        other = [
            f"a photograph of {thing} at {time}"
            for thing in ("the moon", "a cat", "a rocket", "an astronaut", "coffee")
            for time in ("night", "noon", "dawn", "dusk", "sunset", "midnight", "morning", "tea")
        ]
        moved = window(stack, stream, users, other[:40], rng)
        assert moved["drift"]["queries"]["drift"] is True, moved["drift"]["queries"]
        assert moved["drift"]["queries"]["consecutive"] == 1
        # A lasting change: compared with the reference it drifted from, not with itself.
        still = window(stack, stream, users, other[40:] + other[:40], rng)
        assert still["query_reference"] == moved["query_reference"]
        assert still["drift"]["queries"]["drift"] is True
        assert still["drift"]["queries"]["consecutive"] == 2


def test_photographs_uploaded_into_the_synthetic_corpus_raise_image_drift(
    tmp_path: Path, model
) -> None:
    """New scenes from the demo generator do not drift from the serving index's reference
    sample; real photographs (scikit-image's) do. Both arrive as S3 events at the embed
    function, which logs each new embedding."""
    with embed_stack(tmp_path) as embed, usage_log(BUCKET) as stream:
        corpus = [image for image, _ in generate(300, seed=31)]
        reference = np.stack(embed_images(model, [png(i) for i in corpus])).astype(np.float16)
        version = new_version()
        settings = Settings.from_env(
            {"IMGSEARCH_BUCKET": BUCKET, "IMGSEARCH_TABLE": "t", **MONITOR}
        )
        write_reference(embed.s3, BUCKET, settings.index.prefix, version, reference)
        current = CurrentIndex(
            version=version, model=embed.model_id, count=len(corpus), built_at=now_iso()
        )
        write_current(embed.s3, BUCKET, current, None, settings.index.prefix)

        def upload(blobs: list[bytes], prefix: str) -> dict:
            start = datetime.now(UTC)
            events = [
                embed.uploader.put(f"images/{prefix}/{n:03d}.jpg", b) for n, b in enumerate(blobs)
            ]
            for first in range(0, len(events), 10):
                embed.invoke(sqs_event(*events[first : first + 10]))
            stream.flush()
            run = run_monitor(
                settings, embed.s3, now=datetime.now(UTC), start=start, rng=np.random.default_rng(2)
            )
            return run.report

        scenes = upload([jpeg(i) for i, _ in generate(60, seed=32)], "scenes")
        assert scenes["counts"]["ingested"] == 60
        assert scenes["drift"]["images"]["drift"] is False, scenes["drift"]["images"]
        photos = upload(photo_jpegs(photographs(), 60, seed=3), "photos")
        assert photos["drift"]["images"]["drift"] is True, photos["drift"]["images"]
        assert photos["drift"]["images"]["p_value"] <= settings.monitor.drift_alpha
        assert len(photos["projection"]["current"]) == 60


def test_the_monitor_function_writes_its_report_and_metrics(
    tmp_path: Path, model, images, capsys
) -> None:
    with query_stack(tmp_path, model, images, MONITOR) as stack, usage_log(BUCKET) as stream:
        stack.publish()
        Users(stack.load_handler(), images).session(QUERIES[:25])
        stream.flush()
        capsys.readouterr()
        handler = monitor.app.build(dataclasses.replace(stack.settings), stack.clients)
        # The window that ends now (a scheduled run's ends IMGSEARCH_MONITOR_FEEDBACK_LAG_SECONDS
        # before it runs, so that the clicks on its last searches count).
        event = {"trigger": "manual", "now": now_iso()}
        answer = handler(event, LambdaContext("imgsearch-monitor"))
        assert answer["searches"] == 25 and answer["degraded"]["flag"] is False
        body = stack.s3.get_object(Bucket=BUCKET, Key=answer["report"])["Body"].read()
        report = json.loads(body)
        latest = json.loads(
            stack.s3.get_object(Bucket=BUCKET, Key="monitor/latest.json")["Body"].read()
        )
        assert latest == report and report["history"][-1]["searches"] == 25
        picture = stack.s3.get_object(Bucket=BUCKET, Key=f"monitor/{report['run']}/report.svg")
        assert picture["ContentType"] == "image/svg+xml"
        emitted = [
            json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
        ]
        names = {
            m["Name"]
            for line in emitted
            for d in line["_aws"]["CloudWatchMetrics"]
            for m in d["Metrics"]
        }
        assert {"Searches", "CtrAt10", "Mrr", "QualityDegraded", "ZeroResultRate"} <= names
