"""Stream an output object to S3 without holding it whole.

Small outputs are one ``PutObject``. Once the buffer reaches the part size the
writer switches to a multipart upload (parts >= 5 MiB except the last) and
aborts it on failure so no orphaned parts keep costing money. Metadata is fixed
when a multipart upload starts, but the record count is known only at the end:
for multipart outputs it is set by one server-side self-copy after completion.
"""

from __future__ import annotations

from typing import Any


class S3StreamWriter:
    """Write ``key`` in ``bucket`` piece by piece; ``close`` publishes, ``abort`` discards."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        key: str,
        *,
        content_type: str,
        metadata: dict[str, str],
        part_bytes: int,
    ) -> None:
        self._s3, self._bucket, self._key = s3, bucket, key
        self._content_type, self._metadata = content_type, metadata
        self._part_bytes = part_bytes
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.bytes_written = 0

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.bytes_written += len(data)
        if len(self._buffer) >= self._part_bytes:
            self._upload_part()

    def _upload_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._s3.create_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                ContentType=self._content_type,
                Metadata=self._metadata,
            )["UploadId"]
        number = len(self._parts) + 1
        response = self._s3.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buffer),
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self._buffer.clear()

    def close(self, final_metadata: dict[str, str]) -> None:
        """Publish the object with ``final_metadata`` added to the metadata given at start."""
        metadata = {**self._metadata, **final_metadata}
        if self._upload_id is None:
            self._s3.put_object(
                Bucket=self._bucket,
                Key=self._key,
                Body=bytes(self._buffer),
                ContentType=self._content_type,
                Metadata=metadata,
            )
            return
        if self._buffer:
            self._upload_part()
        self._s3.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )
        self._upload_id = None
        self._s3.copy_object(
            Bucket=self._bucket,
            Key=self._key,
            CopySource={"Bucket": self._bucket, "Key": self._key},
            ContentType=self._content_type,
            Metadata=metadata,
            MetadataDirective="REPLACE",
        )

    def abort(self) -> None:
        """Discard everything written; safe to call at any point, also twice."""
        self._buffer.clear()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=upload_id)
