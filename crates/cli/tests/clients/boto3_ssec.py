"""boto3 over TLS against Vallum: SSE-C (customer-provided keys). PUT, GET (whole and range),
HEAD, copy from and to SSE-C, multipart with the key on every part, and the errors S3 gives: no
key, another key, a key on a non-SSE-C object, a bad MD5. VALLUM_CA names the CA bundle.
Exits non-zero on failure."""
import base64
import hashlib
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


def error_of(fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    print("FAILED: expected an error from", fn.__name__, kw, file=sys.stderr)
    sys.exit(1)


key_a = bytes(range(32))
key_b = bytes(range(1, 33))
A = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key_a}
B = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key_b}
md5_a = base64.b64encode(hashlib.md5(key_a).digest()).decode()

s3.create_bucket(Bucket="ssec")
body = os.urandom(300_000)
put = s3.put_object(Bucket="ssec", Key="secret", Body=body, **A)
check(put["SSECustomerAlgorithm"] == "AES256" and put["SSECustomerKeyMD5"] == md5_a, put)
check("ServerSideEncryption" not in put, put)
got = s3.get_object(Bucket="ssec", Key="secret", **A)
check(got["Body"].read() == body and got["SSECustomerKeyMD5"] == md5_a, "GET with the key")
part = s3.get_object(Bucket="ssec", Key="secret", Range="bytes=100000-100099", **A)["Body"].read()
check(part == body[100000:100100], "range GET with the key")
head = s3.head_object(Bucket="ssec", Key="secret", **A)
check(head["ContentLength"] == len(body) and head["SSECustomerAlgorithm"] == "AES256", head)

check(error_of(s3.get_object, Bucket="ssec", Key="secret") == ("InvalidRequest", 400), "no key")
check(error_of(s3.get_object, Bucket="ssec", Key="secret", **B) == ("AccessDenied", 403),
      "another key")
check(error_of(s3.head_object, Bucket="ssec", Key="secret", **B) == ("403", 403), "HEAD, another key")
check(error_of(s3.head_object, Bucket="ssec", Key="secret") == ("400", 400), "HEAD, no key")
s3.put_object(Bucket="ssec", Key="plain", Body=b"kms")
check(error_of(s3.get_object, Bucket="ssec", Key="plain", **A) == ("InvalidRequest", 400),
      "a key for an object that has none")
check(error_of(s3.put_object, Bucket="ssec", Key="x", Body=b"1", SSECustomerAlgorithm="AES256",
               SSECustomerKey=base64.b64encode(key_a).decode(),
               SSECustomerKeyMD5=base64.b64encode(b"0" * 16).decode())
      == ("InvalidArgument", 400), "wrong key MD5")
check(error_of(s3.put_object, Bucket="ssec", Key="x", Body=b"1", SSECustomerAlgorithm="AES256",
               SSECustomerKey=b"short") == ("InvalidArgument", 400), "short key")

# Copy: source under A, target under B; then B opens it and A does not.
s3.copy_object(Bucket="ssec", Key="copy", CopySource={"Bucket": "ssec", "Key": "secret"},
               CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=key_a, **B)
check(s3.get_object(Bucket="ssec", Key="copy", **B)["Body"].read() == body, "copy under B")
check(error_of(s3.get_object, Bucket="ssec", Key="copy", **A) == ("AccessDenied", 403), "copy, A")
check(error_of(s3.copy_object, Bucket="ssec", Key="copy2",
               CopySource={"Bucket": "ssec", "Key": "secret"}) == ("InvalidRequest", 400),
      "copy without the source key")

# Multipart: the key on create and on every part.
mpu = s3.create_multipart_upload(Bucket="ssec", Key="big", **A)
p1 = s3.upload_part(Bucket="ssec", Key="big", UploadId=mpu["UploadId"], PartNumber=1,
                    Body=body[:5 * 1024 * 1024] if len(body) > 5 * 1024 * 1024 else b"p" * (5 << 20), **A)
check(error_of(s3.upload_part, Bucket="ssec", Key="big", UploadId=mpu["UploadId"], PartNumber=2,
               Body=b"q" * 1000, **B) == ("AccessDenied", 403), "a part under another key")
p2 = s3.upload_part(Bucket="ssec", Key="big", UploadId=mpu["UploadId"], PartNumber=2,
                    Body=b"q" * 1000, **A)
s3.complete_multipart_upload(Bucket="ssec", Key="big", UploadId=mpu["UploadId"],
                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]},
                                                        {"PartNumber": 2, "ETag": p2["ETag"]}]})
big = s3.get_object(Bucket="ssec", Key="big", **A)["Body"].read()
check(big == b"p" * (5 << 20) + b"q" * 1000, "multipart under A")
print("boto3 ssec ok")
