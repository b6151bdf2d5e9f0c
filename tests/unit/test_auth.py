"""Where the internal secret comes from, and that every doubt refuses the call."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from daarion_common import auth
from daarion_common.errors import ApiError
from daarion_common.settings import get_settings


def _reload() -> None:
    get_settings.cache_clear()
    auth.reset_cache()


def test_local_default_is_what_agent_runtime_sends():
    auth.verify("dev-secret-token")
    with pytest.raises(ApiError) as err:
        auth.verify("dev-secret-tokeN")
    assert err.value.status == 401


def test_deployed_without_any_secret_fails_closed(monkeypatch):
    monkeypatch.setenv("APP_ENV", "aws")
    _reload()
    for presented in ("dev-secret-token", "", None):
        with pytest.raises(ApiError) as err:
            auth.verify(presented)
        assert err.value.status == 503
        assert err.value.code == "auth_unconfigured"


def test_in_a_real_lambda_environment_the_default_is_aws(monkeypatch):
    monkeypatch.delenv("APP_ENV")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "daarion-prod-LlmProxyFunction")
    _reload()
    assert get_settings().app_env == "aws"
    with pytest.raises(ApiError) as err:
        auth.verify("dev-secret-token")
    assert err.value.status == 503


@mock_aws
def test_secret_from_secrets_manager_is_cached_for_its_ttl(monkeypatch):
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    arn = sm.create_secret(Name="daarion/internal", SecretString="s3cr3t-from-sm")["ARN"]
    monkeypatch.setenv("APP_ENV", "aws")
    monkeypatch.setenv("INTERNAL_SECRET_ARN", arn)
    monkeypatch.setenv("SECRET_CACHE_SECONDS", "300")
    _reload()
    auth.verify("s3cr3t-from-sm")
    with pytest.raises(ApiError):
        auth.verify("dev-secret-token")
    sm.put_secret_value(SecretId=arn, SecretString="rotated")
    auth.verify("s3cr3t-from-sm")  # still cached: no Secrets Manager call per request
    auth.reset_cache()
    auth.verify("rotated")  # a new container (or an expired TTL) reads the new value


@mock_aws
def test_secret_from_ssm_parameter(monkeypatch):
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name="/daarion/internal-secret", Value="from-ssm", Type="SecureString")
    monkeypatch.setenv("APP_ENV", "aws")
    monkeypatch.setenv("INTERNAL_SECRET_PARAM", "/daarion/internal-secret")
    _reload()
    auth.verify("from-ssm")
    with pytest.raises(ApiError) as err:
        auth.verify("dev-secret-token")
    assert err.value.status == 401


@mock_aws
def test_unreadable_secret_refuses_with_503(monkeypatch):
    monkeypatch.setenv("APP_ENV", "aws")
    monkeypatch.setenv("INTERNAL_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf")
    _reload()
    with pytest.raises(ApiError) as err:
        auth.verify("anything")
    assert err.value.status == 503
    assert err.value.code == "auth_unavailable"
