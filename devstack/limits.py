"""AWS's limits as the local stack applies them, each with the status and body AWS returns.

The README's "AWS limits, locally" table lists these with the page each comes from. Timeouts are
configurable (DEVSTACK_API_TIMEOUT_SECONDS, DEVSTACK_FUNCTION_TIMEOUT_SECONDS) so tests need not wait
30 s; sizes are AWS's own and fixed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# Lambda, synchronous invocation: request payload (the event JSON) and response payload.
# https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html ("6 MB each for request and
# response"); the exact byte counts are the ones Lambda's errors name.
LAMBDA_SYNC_REQUEST_BYTES = 6_291_456
LAMBDA_SYNC_RESPONSE_BYTES = 6_291_556
# API Gateway HTTP API: payload size 10 MB, maximum integration timeout 30 s.
# https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html
HTTP_API_PAYLOAD_BYTES = 10 * 1024 * 1024
HTTP_API_INTEGRATION_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class GatewayError:
    """A response the HTTP API itself sends (not the function): status and its fixed JSON body."""

    status: int
    message: str

    @property
    def body(self) -> bytes:
        return json.dumps({"message": self.message}).encode()


# The body is larger than the HTTP API accepts, or the event larger than Lambda accepts.
TOO_LARGE = GatewayError(413, "Request Entity Too Large")
# The integration did not answer within the integration timeout (HTTP APIs answer 503; REST APIs 504).
INTEGRATION_TIMEOUT = GatewayError(503, "Service Unavailable")
# The function failed (unhandled error, its own timeout, a crash, a response over 6 MB) or was throttled.
INTEGRATION_FAILURE = GatewayError(500, "Internal Server Error")
NOT_FOUND = GatewayError(404, "Not Found")


def lambda_request_too_large() -> dict[str, str]:
    """Lambda's Invoke error body (HTTP 413, RequestEntityTooLargeException)."""
    return {
        "Type": "User",
        "message": f"Request must be smaller than {LAMBDA_SYNC_REQUEST_BYTES} bytes for the InvokeFunction operation",
    }


def lambda_throttled() -> dict[str, str]:
    """Lambda's Invoke error body at a reserved-concurrency limit (HTTP 429, TooManyRequestsException)."""
    return {"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded", "Type": "User", "message": "Rate Exceeded."}


def lambda_timed_out(request_id: str, timeout_s: float) -> dict[str, str]:
    """What an invocation stopped at the function's timeout returns (a function error)."""
    return {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds",
    }


def lambda_response_too_large(size: int) -> dict[str, str]:
    return {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
        f"({LAMBDA_SYNC_RESPONSE_BYTES} bytes).",
    }


def lambda_runtime_exited(request_id: str, detail: str) -> dict[str, str]:
    return {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {request_id} Error: Runtime exited without providing a reason ({detail})",
    }
