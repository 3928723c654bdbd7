"""The local stack's emulation rules: API Gateway v2 events, SQS partial batch responses,
template intrinsics, the SAM-transformed template and what moto's CloudFormation is sent.
(The stack itself runs in tests/e2e.)"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from imgsearch_devkit.local.http_adapter import build_event, shape_response
from imgsearch_devkit.local.moto_fixes import for_moto_cloudformation
from imgsearch_devkit.local.sqs_worker import failed_ids, to_lambda_record
from imgsearch_devkit.local.template import (
    Resolver,
    StackTemplate,
    TemplateError,
    load_template,
)

ROOT = Path(__file__).resolve().parents[2]


def test_http_event_has_the_v2_shape() -> None:
    event = build_event(
        "GET",
        "/search?q=red+circle&k=5&k=6",
        [("Host", "127.0.0.1:3000"), ("X-A", "1"), ("x-a", "2"), ("Cookie", "a=1; b=2")],
        b"",
    )
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/search" and event["rawQueryString"] == "q=red+circle&k=5&k=6"
    assert event["queryStringParameters"] == {"q": "red circle", "k": "5,6"}
    assert event["headers"]["x-a"] == "1,2" and "cookie" not in event["headers"]
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["requestContext"]["http"]["method"] == "GET"
    assert "body" not in event and event["isBase64Encoded"] is False


def test_binary_bodies_arrive_base64_text_bodies_as_text() -> None:
    image = build_event("POST", "/search", [("Content-Type", "image/png")], b"\x89PNG")
    assert image["isBase64Encoded"] and base64.b64decode(image["body"]) == b"\x89PNG"
    text = build_event("POST", "/search", [("Content-Type", "application/json")], b'{"a": 1}')
    assert not text["isBase64Encoded"] and text["body"] == '{"a": 1}'


def test_handler_results_become_responses() -> None:
    status, headers, body = shape_response(
        {"statusCode": 201, "headers": {"x": "1"}, "cookies": ["c=1"], "body": "hi"}
    )
    assert (status, body) == (201, b"hi") and ("set-cookie", "c=1") in headers
    assert (
        shape_response(
            {"statusCode": 200, "body": base64.b64encode(b"\x00").decode(), "isBase64Encoded": True}
        )[2]
        == b"\x00"
    )
    # Format 2.0: a bare JSON value is a 200 with that JSON.
    assert shape_response({"ok": True}) == (
        200, [("content-type", "application/json")], b'{"ok": true}'
    )  # fmt: skip


RECORDS = [{"messageId": "a"}, {"messageId": "b"}]


@pytest.mark.parametrize(
    ("response", "kept"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        # Lambda fails the whole batch on an unknown or empty identifier, or a bad shape.
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, {"a", "b"}),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b"}),
        ({"batchItemFailures": "b"}, {"a", "b"}),
        ("not a dict", {"a", "b"}),
    ],
)
def test_partial_batch_responses_follow_lambda(response: object, kept: set[str]) -> None:
    assert failed_ids(response, RECORDS) == kept


def test_sqs_messages_become_lambda_records() -> None:
    message = {
        "MessageId": "m1",
        "ReceiptHandle": "r1",
        "Body": "{}",
        "MD5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
        "Attributes": {"ApproximateReceiveCount": "2"},
        "MessageAttributes": {"t": {"DataType": "Binary", "BinaryValue": b"\x01"}},
    }
    record = to_lambda_record(message, "arn:aws:sqs:us-east-1:1:q", "us-east-1")
    assert record["messageId"] == "m1" and record["receiptHandle"] == "r1"
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"].endswith(":q")
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["messageAttributes"]["t"]["binaryValue"] == "AQ=="


def test_resolver_evaluates_the_templates_names() -> None:
    template = load_template(ROOT / "template.yaml")
    resolve = Resolver(template, "imgsearch-local", "us-east-1", {"Stage": "local"})
    bucket = template["Resources"]["ImageBucket"]["Properties"]["BucketName"]
    assert resolve(bucket) == "imgsearch-local-123456789012-us-east-1"
    assert resolve({"Fn::Sub": "${AWS::StackName}-x"}) == "imgsearch-local-x"
    assert resolve({"Fn::If": ["IsProd", "yes", "no"]}) == "no"
    with pytest.raises(TemplateError, match="IngestQueue"):
        resolve({"Fn::GetAtt": ["IngestQueue", "Arn"]})
    resolve.attributes[("IngestQueue", "Arn")] = "arn:q"
    assert resolve({"Fn::Sub": "${IngestQueue.Arn}/x"}) == "arn:q/x"
    assert json.dumps(resolve({"Fn::Join": ["-", ["a", {"Ref": "Stage"}]]})) == '"a-local"'


@pytest.fixture(scope="module")
def stack() -> StackTemplate:
    return StackTemplate(load_template(ROOT / "template.yaml"), "imgsearch-local", "us-east-1")


def test_functions_are_read_from_the_transformed_template(stack: StackTemplate) -> None:
    functions = stack.functions()
    assert set(functions) == set(stack.source_functions) and len(functions) == 15
    build = functions["BuildIndexFunction"]
    assert (build.handler, build.memory, build.timeout) == ("build_index.app.handler", 4096, 900)
    assert build.name == "imgsearch-local-BuildIndexFunction"
    validate = functions["ValidateIndexFunction"].environment
    # Globals merged in by SAM, parameters at their defaults, resources at stand-in names.
    assert validate["IMGSEARCH_GATE_MIN_RECALL"] == "0.95"
    assert validate["IMGSEARCH_TABLE"] == "imgsearch-local-EmbeddingsTable"
    assert validate["IMGSEARCH_BUCKET"] == "imgsearch-dev-123456789012-us-east-1"
    report = functions["ReportFailureFunction"].environment["IMGSEARCH_ALERTS_TOPIC_ARN"]
    assert report == "arn:aws:sns:us-east-1:123456789012:imgsearch-local-AlertsTopic"
    embed = stack.event_source_mapping("IngestQueue")
    assert (embed.function, embed.batch_size, embed.report_batch_item_failures) == (
        "EmbedFunction", 10, True
    )  # fmt: skip
    assert stack.api_function() == "QueryFunction"  # behind the live alias SAM adds


def test_what_moto_cloudformation_is_sent(stack: StackTemplate) -> None:
    body = for_moto_cloudformation(stack)
    resources = body["Resources"]
    created = {"ImageBucket", "IngestQueue", "IngestDeadLetterQueue", "EmbeddingsTable"}
    assert created | {"AlertsTopic", "EmbedFunction", "EmbedEventSourceMapping"} <= set(resources)
    # Types moto has no model for, what refers to them, and Outputs naming them are left out.
    assert not {"HttpApi", "IndexPipelineRebuild", "EmbedErrorsAlarm", "Dashboard"} & set(resources)
    assert "Outputs" not in body and "IndexPipeline" not in resources
    assert "AWS::NoValue" not in json.dumps(resources["EmbedFunctionRole"])
    assert resources["EmbeddingsTable"]["Properties"]["TableName"] == (
        "imgsearch-local-EmbeddingsTable"
    )
    assert resources["EmbedEventSourceMapping"]["Properties"]["Enabled"] is False
    assert resources["ImageBucket"]["DependsOn"] == []  # the queue policy is not created


def test_the_function_log_is_rotated_instead_of_growing_forever(tmp_path: Path) -> None:
    from imgsearch_devkit.local.function_logs import rotate

    log = tmp_path / "functions.log"
    log.write_text("x" * 100)
    rotate(log, keep_bytes=200)
    assert log.read_text() == "x" * 100  # small: kept
    rotate(log, keep_bytes=50)
    assert not log.exists() and (tmp_path / "functions.log.1").read_text() == "x" * 100
