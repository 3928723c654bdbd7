"""The query function with the images in a bucket of the user's own (``ExistingBucketName``):
the index is read from the stack's bucket, the result URLs are presigned for the user's."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit

from query_support import BUCKET, demo_model, get, make_images, query_stack

PHOTOS = "my-photos"


def test_result_urls_point_into_the_image_bucket(tmp_path: Path) -> None:
    model = demo_model()
    images = make_images(model, 12, seed=5)
    with query_stack(tmp_path, model, images, {"IMGSEARCH_IMAGE_BUCKET": PHOTOS}) as stack:
        stack.s3.create_bucket(Bucket=PHOTOS)
        for image in images:
            stack.s3.put_object(Bucket=PHOTOS, Key=image.key, Body=image.data)
        current = stack.publish()  # into the stack's own bucket
        handler = stack.load_handler()

        reply = get(handler, "/search", q="a red circle", k="3")

        assert reply.status == 200, reply.text
        assert reply.json["index_version"] == current.version
        for result in reply.json["results"]:
            url = urlsplit(result["url"])
            assert PHOTOS in url.netloc and BUCKET not in url.netloc
            assert url.path.endswith(quote(result["key"]))
