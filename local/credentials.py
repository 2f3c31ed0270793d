"""Credentials for the local stand-ins of AWS (moto's S3, the runtime adapter).

botocore signs every request, so it needs credentials; these name no real
account, so nothing run locally can reach or bill one.
"""

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
