"""Score one object's records: several requests in flight, predictions back in input order.

Records are packed into requests (``request_batches``) and up to
``request_concurrency`` requests run at once, yet each response is handed on
only after every earlier one, so the output can be streamed as it arrives.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from client_config import ClientConfig
from endpoint_client import ModelRejection, invoke
from errors import PermanentError
from input_formats import Header, InputFormat, RecordStream
from request_batches import Batch, batches


class OrderedScorer:
    """Scores with one endpoint and one runtime client (one per cold start)."""

    def __init__(self, config: ClientConfig, runtime: Any) -> None:
        self._config, self._runtime = config, runtime

    def predictions(
        self, fmt: InputFormat, stream: RecordStream
    ) -> Iterator[tuple[Batch, list[bytes]]]:
        """Each request with its predictions, in input order; close it to stop early."""
        concurrency = self._config.request_concurrency
        requests = batches(fmt, stream, self._config.max_request_bytes)
        with ThreadPoolExecutor(concurrency, thread_name_prefix="invoke") as pool:
            in_flight: deque[tuple[Batch, Future[bytes]]] = deque()
            try:
                for batch in requests:
                    in_flight.append((batch, pool.submit(self._invoke, fmt, batch)))
                    if len(in_flight) >= concurrency:
                        yield _collect(fmt, stream.header, *in_flight.popleft())
                while in_flight:
                    yield _collect(fmt, stream.header, *in_flight.popleft())
            finally:
                for _, future in in_flight:
                    future.cancel()

    def _invoke(self, fmt: InputFormat, batch: Batch) -> bytes:
        return invoke(self._runtime, self._config.endpoint_name, fmt.content_type, batch.body)


def _collect(
    fmt: InputFormat, header: Header | None, batch: Batch, future: Future[bytes]
) -> tuple[Batch, list[bytes]]:
    try:
        body = future.result()
    except ModelRejection as rejection:
        raise _rejection_error(header, batch, rejection) from rejection
    predictions = fmt.predictions(body)
    if len(predictions) != batch.count:
        raise PermanentError(
            f"the endpoint returned {len(predictions)} predictions for the {batch.count} "
            f"records {batch.first_record}..{batch.first_record + batch.count - 1}",
            details={"request": batch.index},
        )
    return batch, predictions


def _rejection_error(
    header: Header | None, batch: Batch, rejection: ModelRejection
) -> PermanentError:
    """Name the FILE's record (and line) that the endpoint rejected in one request.

    A CSV header is resent as line 1 of every request; the server counts it as a
    record only when it does not match the model's feature names, so for CSV
    with a header the request LINE, not the record, locates the culprit.
    """
    record_in_request, line_in_request = rejection.position()
    details = {"request": batch.index, "request_first_record": batch.first_record}
    common = {
        "endpoint_status": rejection.status,
        "endpoint_message": rejection.message,
        "details": details,
    }
    if header is not None and line_in_request is not None:
        if line_in_request == 1:
            return PermanentError(
                f"the endpoint rejected the CSV header (line {header.line}) with status "
                f"{rejection.status}: its column names must be the model's feature names in order",
                line=header.line,
                **common,
            )
        record_in_request = line_in_request - 1
    record = batch.file_record(record_in_request) if record_in_request else None
    line = batch.file_line(record_in_request) if record_in_request else None
    details["request_record"] = record_in_request
    where = f"record {record}" if record else f"request {batch.index}"
    return PermanentError(
        f"the endpoint rejected {where} with status {rejection.status}",
        record=record,
        line=line,
        **common,
    )
