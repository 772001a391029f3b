"""The one object-store adapter: any S3-compatible service through boto3 (AWS S3, DigitalOcean Spaces, Google Cloud
Storage's XML API with HMAC keys, MinIO; moto locally and in the tests).

Configuration: the `QORCH_S3_*` settings of `shared.runtime.config` (bucket, region, endpoint, credentials,
addressing style, checksum signing), validated with the rest of the configuration at start. Only a missing bucket
waits until an artifact function needs it (every other function runs without one).

`boto3` is imported here only, lazily, and the client is created once per instance on first use: functions that
never touch artifacts never pay for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from shared.domain.errors import Unavailable
from shared.runtime.config import Settings, config
from shared.runtime.instance import PerInstance

_CHUNK = 1024 * 1024


class ObjectStoreNotConfigured(RuntimeError):
    """A deployment mistake (no bucket, half the credentials): a 500 with the reason in the log, never a guess."""


@dataclass(frozen=True, slots=True)
class ObjectStoreConfig:
    bucket: str
    region: str = "us-east-1"
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    addressing_style: str = "auto"
    sign_checksum: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> ObjectStoreConfig:
        if not settings.s3_bucket:
            raise ObjectStoreNotConfigured("QORCH_S3_BUCKET is not set: artifacts need a bucket.")
        key, secret = settings.s3_access_key_id, settings.s3_secret_access_key
        return cls(bucket=settings.s3_bucket, region=settings.s3_region, endpoint_url=settings.s3_endpoint_url,
                   access_key_id=key.get_secret_value() if key else None,
                   secret_access_key=secret.get_secret_value() if secret else None,
                   addressing_style=settings.s3_addressing_style, sign_checksum=settings.s3_sign_checksum)


@dataclass(frozen=True, slots=True)
class StoredObject:
    size: int
    sha256: str | None  # hex; None when the size already differs from the one expected (not worth hashing)


class ObjectStore:
    def __init__(self, cfg: ObjectStoreConfig) -> None:
        self.cfg = cfg
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3  # lazily: only artifact functions load it
                    from botocore.config import Config

                    self._client = boto3.session.Session().client(
                        "s3", region_name=self.cfg.region, endpoint_url=self.cfg.endpoint_url,
                        aws_access_key_id=self.cfg.access_key_id, aws_secret_access_key=self.cfg.secret_access_key,
                        config=Config(
                            signature_version="s3v4",  # presigned URLs in SigV4 (moto otherwise gives SigV2)
                            s3={"addressing_style": self.cfg.addressing_style},
                            # Only the checksums S3 requires: third-party S3 services reject the newer defaults.
                            request_checksum_calculation="when_required",
                            response_checksum_validation="when_required",
                            connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3},
                        ),
                    )
        return self._client

    @contextmanager
    def _call(self) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            yield
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500 or exc.response.get("Error", {}).get("Code") in ("SlowDown", "RequestTimeout"):
                raise Unavailable("The object store did not answer in time; retry shortly.") from exc
            raise
        except NoCredentialsError as exc:
            raise ObjectStoreNotConfigured("No credentials for the object store: set QORCH_S3_ACCESS_KEY_ID and "
                                           "QORCH_S3_SECRET_ACCESS_KEY.") from exc
        except BotoCoreError as exc:  # connection refused, timeouts, ...
            raise Unavailable("The object store cannot be reached; retry shortly.") from exc

    # ---- presigned URLs (no network) -----------------------------------------------------------------------------

    def presign_put(self, key: str, *, content_type: str, size_bytes: int, sha256_hex: str,
                    expires_in: int) -> tuple[str, dict[str, str]]:
        """A PUT URL for exactly these bytes, and the headers the uploader must send (they are signed)."""
        params: dict[str, Any] = {"Bucket": self.cfg.bucket, "Key": key, "ContentType": content_type,
                                  "ContentLength": size_bytes}
        headers = {"Content-Type": content_type, "Content-Length": str(size_bytes)}
        if self.cfg.sign_checksum:
            params["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(sha256_hex)).decode()
            headers["x-amz-checksum-sha256"] = params["ChecksumSHA256"]
        with self._call():
            url = self.client.generate_presigned_url("put_object", Params=params, ExpiresIn=expires_in)
        return url, headers

    def presign_get(self, key: str, *, content_type: str, content_disposition: str, expires_in: int) -> str:
        with self._call():
            return self.client.generate_presigned_url(
                "get_object", ExpiresIn=expires_in,
                Params={"Bucket": self.cfg.bucket, "Key": key, "ResponseContentType": content_type,
                        "ResponseContentDisposition": content_disposition})

    # ---- objects -------------------------------------------------------------------------------------------------

    def stat(self, key: str, *, expected_size: int) -> StoredObject | None:
        """What is stored at `key`: None if nothing; else its size and SHA-256 (from the service's own checksum
        when it keeps one, else by reading the bytes: moto, GCS and some others do not return it)."""
        from botocore.exceptions import ClientError

        try:
            with self._call():
                head = self.client.head_object(Bucket=self.cfg.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise
        size = int(head["ContentLength"])
        if size != expected_size:
            return StoredObject(size=size, sha256=None)
        checksum = head.get("ChecksumSHA256")
        if checksum and "-" not in checksum and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            try:
                return StoredObject(size=size, sha256=base64.b64decode(checksum, validate=True).hex())
            except binascii.Error:
                pass
        digest = hashlib.sha256()
        read = 0
        try:
            with self._call():
                body = self.client.get_object(Bucket=self.cfg.bucket, Key=key)["Body"]
                for chunk in iter(lambda: body.read(_CHUNK), b""):
                    digest.update(chunk)
                    read += len(chunk)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return StoredObject(size=read, sha256=digest.hexdigest())

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix` (a workflow's or an account's); returns how many."""
        deleted = 0
        with self._call():
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.cfg.bucket, Prefix=prefix)
            for page in pages:
                keys = [o["Key"] for o in page.get("Contents", [])]
                if keys:
                    self._delete_keys(keys)
                    deleted += len(keys)
        return deleted

    def _delete_keys(self, keys: list[str]) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.delete_objects(Bucket=self.cfg.bucket,
                                       Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
        except ClientError as exc:  # GCS's XML API has no multi-object delete: one by one there
            if exc.response.get("Error", {}).get("Code") not in ("NotImplemented", "InvalidArgument", "MalformedXML"):
                raise
            for key in keys:
                self.client.delete_object(Bucket=self.cfg.bucket, Key=key)

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (local development and tests; production buckets are provisioned)."""
        from botocore.exceptions import ClientError

        with self._call():
            try:
                self.client.head_bucket(Bucket=self.cfg.bucket)
            except ClientError:
                extra = ({} if self.cfg.region == "us-east-1"
                         else {"CreateBucketConfiguration": {"LocationConstraint": self.cfg.region}})
                self.client.create_bucket(Bucket=self.cfg.bucket, **extra)


_store: PerInstance[ObjectStore] = PerInstance(lambda: ObjectStore(ObjectStoreConfig.from_settings(config())))


def get_object_store() -> ObjectStore:
    """This instance's object store, configured and created on first use."""
    return _store.get()


def use_object_store(store: ObjectStore | None) -> None:
    """Point this process at another object store (tests, tools). None: back to the configured one."""
    _store.set(store)
