"""API Gateway HTTP API (payload format 2.0) for the local stack: route matching, the event a
request becomes, and the HTTP response a Lambda result becomes — as AWS documents them.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devstack.template import ACCOUNT_ID, HttpRoute

_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/x-www-form-urlencoded",
    "application/javascript",
)


@dataclass(frozen=True)
class Match:
    route: HttpRoute
    path_parameters: dict[str, str]


def _pattern(path: str) -> re.Pattern[str]:
    out = []
    for part in path.strip("/").split("/"):
        if part.endswith("+}"):
            out.append(f"(?P<{re.escape(part[1:-2])}>.+)")
        elif part.startswith("{") and part.endswith("}"):
            out.append(f"(?P<{part[1:-1]}>[^/]+)")
        else:
            out.append(re.escape(part))
    return re.compile("^/" + "/".join(out) + "$")


class Router:
    """API Gateway's precedence: an exact path beats a path with variables beats a greedy one;
    a specific method beats ANY."""

    def __init__(self, routes: list[HttpRoute]) -> None:
        def rank(route: HttpRoute) -> tuple[int, int, int]:
            greedy = "+}" in route.path
            variables = route.path.count("{")
            return (greedy, variables, route.method == "ANY")

        self.routes = [(r, _pattern(r.path)) for r in sorted(routes, key=rank)]

    def match(self, method: str, path: str) -> Match | None:
        for route, pattern in self.routes:
            if route.method not in (method, "ANY"):
                continue
            found = pattern.match(path)
            if found:
                return Match(route, {k: v for k, v in found.groupdict().items()})
        return None


def v2_event(
    *,
    method: str,
    path: str,
    query_string: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    domain: str,
    domain_prefix: str,
    api_id: str,
    account_id: str,
    route_key: str,
    request_id: str,
) -> dict[str, Any]:
    """A payload format 2.0 event, as both an HTTP API and a Function URL build it: repeated headers joined
    with commas, cookies apart, repeated query parameters joined, a text body as is and any other base64."""
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    query: dict[str, str] = {}
    if query_string:
        from urllib.parse import parse_qsl

        for key, value in parse_qsl(query_string, keep_blank_values=True):
            query[key] = f"{query[key]},{value}" if key in query else value
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query_string,
        "headers": merged,
        "requestContext": {
            "accountId": account_id,
            "apiId": api_id,
            "domainName": domain,
            "domainPrefix": domain_prefix,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body:
        content_type = merged.get("content-type", "")
        if content_type.startswith(_TEXT_TYPES) or not content_type:
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
        else:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return event


def build_event(
    *,
    method: str,
    path: str,
    query_string: str,
    headers: list[tuple[str, str]],
    body: bytes,
    match: Match,
    source_ip: str,
    domain: str,
    request_id: str | None = None,
    account_id: str = ACCOUNT_ID,
) -> dict[str, Any]:
    """The event an HTTP API hands a Lambda integration (payload format version 2.0)."""
    event = v2_event(
        method=method, path=path, query_string=query_string, headers=headers, body=body, source_ip=source_ip,
        domain=domain, domain_prefix=domain.split(".")[0].split(":")[0], api_id="local", account_id=account_id,
        route_key=match.route.route_key,
        request_id=request_id or base64.b32encode(uuid.uuid4().bytes).decode()[:16],
    )  # fmt: skip
    if match.path_parameters:
        event["pathParameters"] = match.path_parameters
    return event


def to_http(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """A Lambda result as API Gateway turns it into an HTTP response (format 2.0 rules)."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # 2.0 infers a 200 JSON response from anything that is not a response object.
        body = result if isinstance(result, str) else json.dumps(result)
        return 200, [("content-type", "application/json")], body.encode()
    status = int(result["statusCode"])
    headers = [(k.lower(), str(v)) for k, v in (result.get("headers") or {}).items()]
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((key.lower(), str(v)) for v in values)
    headers.extend(("set-cookie", c) for c in result.get("cookies") or [])
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
    return status, headers, body
