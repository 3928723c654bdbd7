"""The query function serves the model its index names: a registered model of another dimension
is loaded before the swap, model and index change together, queries never fail meanwhile."""

from __future__ import annotations

from pathlib import Path

import pytest
from imgsearch_devkit.ops.registry import register_model
from imgsearch_devkit.target import Target
from query_support import (
    BUCKET,
    REGION,
    TABLE,
    demo_model,
    get,
    make_images,
    publish_index,
    query_load,
    query_stack,
)
from tiny_bundle import make_tiny_bundle

from imgsearch.model import ClipModel


@pytest.fixture(scope="module")
def model() -> ClipModel:
    return demo_model()


def test_an_index_of_a_registered_model_is_served_with_that_model(tmp_path: Path, model) -> None:
    images = make_images(model, 12, seed=3)
    with query_stack(tmp_path, model, images) as stack:
        first = stack.publish()
        handler = stack.load_handler()
        page = get(handler, "/search", q="red circle", k="3").json
        assert page["model"] == model.model_id and page["next_cursor"]

        register_model(Target(REGION, BUCKET, TABLE), str(make_tiny_bundle(tmp_path / "tiny")))
        tiny = ClipModel.load(tmp_path / "tiny", threads=1)
        tiny_images = make_images(tiny, 12, seed=3)
        second = publish_index(stack.s3, stack.settings, "tiny@1", tiny_images)
        assert handler.service.refresh_now()
        version = get(handler, "/version").json
        assert (version["model"], version["embedding_dim"]) == ("tiny@1", 8)
        assert version["index_version"] == second.version
        answer = get(handler, "/search", q="red circle", k="3").json
        assert answer["model"] == "tiny@1" and len(answer["results"]) == 3
        # A cursor of the old (model, index) pair is refused, not answered with the new one.
        stale = get(handler, "/search", q="red circle", k="3", cursor=page["next_cursor"])
        assert stale.status == 422
        assert handler.service.models.loaded == sorted(["tiny@1", model.model_id])

        # An index naming a model that is not registered is not served: tiny@1 stays.
        publish_index(stack.s3, stack.settings, "ghost@1", tiny_images)
        assert not handler.service.refresh_now()
        assert get(handler, "/version").json["model"] == "tiny@1"
        assert first.model == model.model_id


def test_queries_never_fail_while_model_and_index_swap(tmp_path: Path, model) -> None:
    images = make_images(model, 12, seed=4)
    with query_stack(tmp_path, model, images) as stack:
        demo_version = stack.publish()
        handler = stack.load_handler()
        register_model(Target(REGION, BUCKET, TABLE), str(make_tiny_bundle(tmp_path / "tiny")))
        tiny_images = make_images(ClipModel.load(tmp_path / "tiny", threads=1), 12, seed=4)
        pairs = {demo_version.version: model.model_id}
        with query_load(handler, "blue square", threads=4) as load:
            for _ in range(3):
                tiny = publish_index(stack.s3, stack.settings, "tiny@1", tiny_images)
                pairs[tiny.version] = "tiny@1"
                handler.service.refresh_now()
                back = publish_index(stack.s3, stack.settings, model.model_id, images)
                pairs[back.version] = model.model_id
                handler.service.refresh_now()
        assert load.failures == []
        assert len(load.answers) > 20
        # Every answer came from one (model, index) pair that was published together.
        assert all(pairs[version] == model_id for version, model_id in load.answers)
        assert {model_id for _, model_id in load.answers} >= {model.model_id}
