"""boto3 over TLS, retries off: requests answered before their body is used (a failed
precondition, a missing key) leave the connection reusable. botocore sends such PUTs with an
aws-chunked body; a server that answered without reading it and then closed the connection
made the client's next request on it fail with a TLS EOF. VALLUM_CA names the CA bundle.
Exits non-zero on failure."""
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint = os.environ["VALLUM_ENDPOINT"]
cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=cfg,
                  verify=os.environ["VALLUM_CA"],
                  aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                  aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])


def check(cond, msg):
    if not cond:
        print("FAILED:", msg, file=sys.stderr)
        sys.exit(1)


def code_of(fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        return e.response["Error"]["Code"]
    check(False, f"expected an error from {fn.__name__} {kw}")


s3.create_bucket(Bucket="early")
for i in range(40):
    s3.put_object(Bucket="early", Key="there", Body=b"x")
    check(code_of(s3.put_object, Bucket="early", Key="there", IfNoneMatch="*")
          == "PreconditionFailed", "If-None-Match on an existing key")
    check(code_of(s3.put_object, Bucket="early", Key="missing", IfMatch="*") == "NoSuchKey",
          "If-Match on a missing key")
    check(code_of(s3.put_object, Bucket="early", Key="there", IfMatch="nope",
                  Body=b"y" * 1000) == "PreconditionFailed", "If-Match with another ETag")
    s3.head_bucket(Bucket="early")
print("boto3 early answers ok")
