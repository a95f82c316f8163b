"""Large downloads as presigned S3 links: Lambda answers at most 6 MB, so a file past
INLINE_MAX_BYTES (or any file, when the caller asks for a link) is written to the private
bucket under `exports/` (expired by a lifecycle rule after a day) and answered as
`{"export_url", "expires_at"}`: a GET URL that needs no token until it expires."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from ticketing import clock
from ticketing.config import settings
from ticketing.errors import ConfigurationError
from ticketing.ids import new_id

INLINE_MAX_BYTES = 1_000_000  # answered in the response up to this; a link past it (Lambda's limit is 6 MB)
URL_SECONDS = 60 * 60  # lifetime of an export's link
PREFIX = "exports/"


class ExportOut(BaseModel):
    export_url: str  # a presigned S3 GET, no token needed
    expires_at: str


def fits_inline(body: bytes) -> bool:
    return len(body) <= INLINE_MAX_BYTES


def store(body: bytes, filename: str, content_type: str) -> ExportOut:
    """Write `body` to the bucket and answer its link (one PutObject; the URL is signed locally)."""
    bucket = settings().qr_bucket
    if not bucket:
        raise ConfigurationError("QR_BUCKET is not set (exports are written there)")
    key = f"{PREFIX}{new_id('ex')}/{filename}"
    s3 = _s3()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type,
                  ContentDisposition=f'attachment; filename="{filename}"')
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=URL_SECONDS)
    return ExportOut(export_url=url, expires_at=clock.iso(clock.now() + timedelta(seconds=URL_SECONDS)))


@lru_cache(maxsize=1)
def _s3() -> Any:
    """SigV4 (presigned URLs work in every region), short timeouts."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", region_name=settings().region,
        config=Config(signature_version="s3v4", connect_timeout=2, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"}),
    )


def reset_client() -> None:
    _s3.cache_clear()
