"""The file extensions the client scores, each with the media type it sends and asks for.

The one list of them: the client reads files by it, and the client stack filters the input
bucket's notifications by it (standard library only, so the CDK app imports it as
``lambda_fn.file_types``).
"""

MEDIA_TYPES = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".jsonl": "application/jsonlines",
    ".jsonlines": "application/jsonlines",
}
