"""What only the ``aws-kms`` provider has: aliases, the key's state, an outage, its settings."""

from __future__ import annotations

import logging
import os

import pytest

from meshd.kms import KMSUnavailableError
from meshd.natsserver import free_port

from .conftest import AWS_ENV, need
from .servers import MotoKms

CONTEXT = {"region": "eu-west-1", "purpose": "secrets", "key_id": "k-1", "version": "1"}


@pytest.fixture
def aws(moto_kms: tuple[MotoKms, str], monkeypatch: pytest.MonkeyPatch) -> object:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return need("meshd_kms_aws")


def _provider(aws: object, **settings: object) -> object:
    return aws.AwsKmsProvider(aws.AwsKmsSettings.from_config({"aws_region": "eu-west-1", **settings}))


def test_an_alias_resolves_to_the_key_arn_and_both_unwrap(aws: object, moto_kms: tuple[MotoKms, str]) -> None:
    server, arn = moto_kms
    by_alias = _provider(aws, key="alias/meshd", endpoint_url=server.url)
    by_arn = _provider(aws, key=arn, endpoint_url=server.url)
    assert by_alias.describe() == {"provider": "aws-kms", "kek_id": arn} == by_arn.describe()
    key = os.urandom(32)
    assert by_arn.unwrap(by_alias.wrap(key, dict(CONTEXT)), dict(CONTEXT)) == key


def test_a_disabled_or_unknown_key_refuses_to_open(aws: object, moto_kms: tuple[MotoKms, str]) -> None:
    server, _ = moto_kms
    boto3 = need("boto3")
    client = boto3.client("kms", endpoint_url=server.url, region_name="eu-west-1")
    meta = client.create_key()["KeyMetadata"]
    arn = meta["Arn"]
    client.disable_key(KeyId=meta["KeyId"])
    # (moto still decrypts under a disabled key, so the DisabledException of a running provider is untested.)
    with pytest.raises(KMSUnavailableError, match="disabled"):
        _provider(aws, key=arn, endpoint_url=server.url)
    with pytest.raises(KMSUnavailableError, match="NotFound"):
        _provider(aws, key="alias/no-such-key", endpoint_url=server.url)


def test_a_stopped_server_is_an_outage_and_no_data_key_reaches_the_log(
        aws: object, caplog: pytest.LogCaptureFixture) -> None:
    from ..keys.keyleaks import leaks

    caplog.set_level(logging.DEBUG)
    server = MotoKms().start()
    try:
        boto3 = need("boto3")
        arn = boto3.client("kms", endpoint_url=server.url, region_name="eu-west-1").create_key()["KeyMetadata"]["Arn"]
        provider = _provider(aws, key=arn, endpoint_url=server.url, timeout=1, max_attempts=1)
        key = os.urandom(32)
        wrapped = provider.wrap(key, dict(CONTEXT))
        assert provider.unwrap(wrapped, dict(CONTEXT)) == key
    finally:
        server.stop()
    with pytest.raises(KMSUnavailableError):
        provider.check()
    with pytest.raises(KMSUnavailableError) as err:
        provider.unwrap(wrapped, dict(CONTEXT))
    assert "EndpointConnectionError" in str(err.value) or "Connect" in str(err.value)
    assert leaks(caplog.text.encode(), [key, AWS_ENV["AWS_SECRET_ACCESS_KEY"].encode()]) == []
    with pytest.raises(KMSUnavailableError):
        _provider(aws, key=arn, endpoint_url=f"http://127.0.0.1:{free_port()}", timeout=1, max_attempts=1)


def test_the_region_comes_from_the_arn_unless_set(aws: object) -> None:
    settings = aws.AwsKmsSettings.from_config({"key": "arn:aws:kms:ca-central-1:123456789012:key/abc"})
    assert settings.key_region() == "ca-central-1"
    assert aws.AwsKmsSettings.from_config({"key": "alias/x"}).key_region() is None
    assert aws.AwsKmsSettings.from_config({"key": "alias/x", "aws_region": "eu-west-1"}).key_region() == "eu-west-1"


@pytest.mark.parametrize(("settings", "named"), [
    ({}, "keys.kms.settings.key"),
    ({"key": "alias/x", "secret_access_key": "s3cr3t"}, "keys.kms.settings.secret_access_key"),
    ({"key": "alias/x", "max_attempts": 0}, "keys.kms.settings.max_attempts"),
])
def test_bad_settings_name_the_key_and_not_the_value(aws: object, settings: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named.replace(".", r"\.")) as err:
        aws.AwsKmsSettings.from_config({**settings, "state_dir": "/s", "keys_dir": "/s/keys"})
    assert "s3cr3t" not in str(err.value)
