"""An S3 bucket-and-prefix pair, the unit in which data moves and permissions are granted."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws


@dataclass(frozen=True)
class S3Location:
    """A prefix inside one bucket; `prefix` ends with '/' (or is empty for the whole bucket)."""

    bucket_name: str
    prefix: str

    @classmethod
    def from_uri(cls, uri: str) -> S3Location:
        """Parses `s3://bucket/prefix` (already validated by the config)."""
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        return cls(bucket, prefix.rstrip("/") + "/" if prefix else "")

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket_name}/{self.prefix}"

    @property
    def bucket_arn(self) -> str:
        return f"arn:{Aws.PARTITION}:s3:::{self.bucket_name}"

    @property
    def objects_arn(self) -> str:
        """Every object under the prefix."""
        return f"{self.bucket_arn}/{self.prefix}*"
