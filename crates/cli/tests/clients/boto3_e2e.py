"""boto3 against a running Vallum: multipart transfer, pagination past 1000 keys, copy,
batch delete, range reads, presigned GET, and a bad signature. Exits non-zero on failure."""
import hashlib
import os
import sys
import tempfile
import urllib.request

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint = os.environ["VALLUM_ENDPOINT"]
cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=cfg,
                  aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                  aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])

def check(cond, msg):
    if not cond:
        print("FAILED:", msg, file=sys.stderr)
        sys.exit(1)

s3.create_bucket(Bucket="boto")
with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "big.bin")
    with open(src, "wb") as f:
        for i in range(64):
            f.write(hashlib.sha256(str(i).encode()).digest() * (1024 * 1024 // 32))
    transfer = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024)
    s3.upload_file(src, "boto", "big.bin", Config=transfer)
    head = s3.head_object(Bucket="boto", Key="big.bin")
    check(head["ContentLength"] == 64 * 1024 * 1024, "size of multipart object")
    check(head["ETag"].endswith('-8"'), "multipart etag %s" % head["ETag"])
    dst = os.path.join(tmp, "back.bin")
    s3.download_file("boto", "big.bin", dst, Config=transfer)
    check(open(src, "rb").read() == open(dst, "rb").read(), "multipart round trip")
    rng = s3.get_object(Bucket="boto", Key="big.bin", Range="bytes=8388600-8388615")["Body"].read()
    check(rng == open(src, "rb").read()[8388600:8388616], "range across part boundary")

for i in range(1205):
    s3.put_object(Bucket="boto", Key="many/%05d" % i, Body=b"x")
keys = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="boto", Prefix="many/"):
    keys += [o["Key"] for o in page.get("Contents", [])]
check(keys == ["many/%05d" % i for i in range(1205)], "paginated listing (%d keys)" % len(keys))
v1 = []
for page in s3.get_paginator("list_objects").paginate(Bucket="boto", Prefix="many/", PaginationConfig={"PageSize": 500}):
    v1 += [o["Key"] for o in page.get("Contents", [])]
check(v1 == keys, "v1 paginated listing")

s3.copy_object(Bucket="boto", Key="copy.bin", CopySource={"Bucket": "boto", "Key": "many/00001"})
check(s3.get_object(Bucket="boto", Key="copy.bin")["Body"].read() == b"x", "copy")
resp = s3.delete_objects(Bucket="boto", Delete={"Objects": [{"Key": "many/%05d" % i} for i in range(1000)]})
check(len(resp.get("Deleted", [])) == 1000, "batch delete of 1000")
left = s3.list_objects_v2(Bucket="boto", Prefix="many/")["KeyCount"]
check(left == 205, "left after batch delete: %d" % left)

url = s3.generate_presigned_url("get_object", Params={"Bucket": "boto", "Key": "copy.bin"}, ExpiresIn=300)
check(urllib.request.urlopen(url).read() == b"x", "presigned GET")

bad = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=cfg,
                   aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"], aws_secret_access_key="wrong-secret")
try:
    bad.list_objects_v2(Bucket="boto")
    check(False, "bad signature accepted")
except ClientError as e:
    check(e.response["Error"]["Code"] == "SignatureDoesNotMatch", "bad signature code %s" % e.response["Error"]["Code"])
try:
    s3.get_object(Bucket="boto", Key="missing")
    check(False, "missing key returned")
except ClientError as e:
    check(e.response["Error"]["Code"] == "NoSuchKey", "missing key code")
print("boto3 e2e ok")
