"""The local gateway's translation: the events it builds have the shape real API Gateway and SQS send."""

from __future__ import annotations

import base64
import json

from devstack import template as tpl
from devstack.apigw import Router, build_event, to_http
from devstack.pollers import sqs_record
from tests.conftest import load_event


def _route(method: str, path: str, fn: str = "F") -> tpl.HttpRoute:
    return tpl.HttpRoute(method, path, fn)


def test_router_follows_api_gateway_precedence():
    router = Router(
        [
            _route("ANY", "/{proxy+}", "greedy"),
            _route("GET", "/items/{id}", "var"),
            _route("GET", "/items/special", "exact"),
            _route("ANY", "/items/special", "any"),
        ]
    )
    assert router.match("GET", "/items/special").route.function == "exact"
    assert router.match("POST", "/items/special").route.function == "any"
    match = router.match("GET", "/items/42")
    assert match.route.function == "var" and match.path_parameters == {"id": "42"}
    assert router.match("DELETE", "/a/b/c").path_parameters == {"proxy": "a/b/c"}
    assert Router([_route("GET", "/x")]).match("POST", "/x") is None


def test_built_event_has_the_shape_of_a_real_http_api_event():
    real = load_event("apigw_v2_post_llm_proxy.json")
    match = Router([_route("POST", "/internal/llm/proxy")]).match("POST", "/internal/llm/proxy")
    event = build_event(
        method="POST",
        path="/internal/llm/proxy",
        query_string="a=1&a=2&b=",
        headers=[
            ("Content-Type", "application/json"),
            ("X-Internal-Secret", "s"),
            ("Cookie", "c1=1; c2=2"),
            ("X-Multi", "1"),
            ("X-Multi", "2"),
        ],
        body=real["body"].encode(),
        match=match,
        source_ip="127.0.0.1",
        domain="localhost:3000",
    )
    assert set(real) - {"queryStringParameters"} <= set(event)
    assert set(real["requestContext"]) <= set(event["requestContext"])
    assert set(real["requestContext"]["http"]) == set(event["requestContext"]["http"])
    assert event["routeKey"] == "POST /internal/llm/proxy"
    assert event["headers"]["x-internal-secret"] == "s" and event["headers"]["x-multi"] == "1,2"
    assert event["cookies"] == ["c1=1", "c2=2"]
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert json.loads(event["body"]) == json.loads(real["body"]) and event["isBase64Encoded"] is False


def test_binary_bodies_are_base64_encoded():
    match = Router([_route("POST", "/u")]).match("POST", "/u")
    event = build_event(
        method="POST", path="/u", query_string="", headers=[("content-type", "application/octet-stream")],
        body=b"\x00\xff", match=match, source_ip="127.0.0.1", domain="localhost",
    )  # fmt: skip
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\x00\xff"


def test_lambda_results_become_http_responses():
    status, headers, body = to_http({"statusCode": 201, "headers": {"X-A": "1"}, "body": "hi", "cookies": ["k=v"]})
    assert status == 201 and ("x-a", "1") in headers and ("set-cookie", "k=v") in headers and body == b"hi"
    assert (
        to_http({"statusCode": 200, "body": base64.b64encode(b"\x01").decode(), "isBase64Encoded": True})[2] == b"\x01"
    )
    status, headers, body = to_http({"ok": True})  # format 2.0 infers a JSON 200
    assert status == 200 and json.loads(body) == {"ok": True}


def test_sqs_records_have_the_shape_lambda_delivers():
    real = load_event("sqs_usage_batch.json")["Records"][0]
    message = {"MessageId": "m1", "ReceiptHandle": "r1", "Body": "{}", "Attributes": {"ApproximateReceiveCount": "3"}}
    record = sqs_record(message, "arn:aws:sqs:us-east-1:123456789012:q")
    assert set(record) == set(real)
    assert set(record["attributes"]) == set(real["attributes"])
    assert record["attributes"]["ApproximateReceiveCount"] == "3"


def test_resolver_evaluates_the_intrinsics_the_template_uses():
    template = tpl.load_template()
    resolver = tpl.Resolver(
        template,
        {"DatabaseSecretArn": "arn:db"},
        {"InternalSecret": {"Ref": "arn:internal"}, "HttpApi": {"Ref": "api1"}},
    )
    assert resolver.condition("CreateInternalSecret") is True
    assert resolver.condition("HasVpc") is False
    assert (
        resolver.resolve(template["Globals"]["Function"]["Environment"]["Variables"]["INTERNAL_SECRET_ARN"])
        == "arn:internal"
    )
    assert (
        resolver.resolve(template["Outputs"]["ApiUrl"]["Value"]) == "https://api1.execute-api.us-east-1.amazonaws.com"
    )
    given = tpl.Resolver(template, {"InternalSecretArn": "arn:given", "VpcSubnetIds": ["subnet-1"]}, {})
    assert given.condition("CreateInternalSecret") is False and given.condition("HasVpc") is True
    assert tpl.rate_seconds("rate(5 minutes)") == 300 and tpl.rate_seconds("cron(0 * * * ? *)") is None
