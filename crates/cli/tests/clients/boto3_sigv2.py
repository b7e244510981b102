"""boto3 signing with AWS Signature Version 2 (`signature_version="s3"`), as older tools do:
bucket requests (which botocore signs as `/bucket/` while sending `/bucket`) and object
requests, and a wrong secret refused. Exits non-zero on failure."""
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint = os.environ["VALLUM_ENDPOINT"]


def client(secret):
    cfg = Config(signature_version="s3", s3={"addressing_style": "path"},
                 retries={"max_attempts": 1})
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=cfg,
                        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=secret)


def check(cond, msg):
    if not cond:
        print("FAILED:", msg, file=sys.stderr)
        sys.exit(1)


s3 = client(os.environ["AWS_SECRET_ACCESS_KEY"])
s3.create_bucket(Bucket="sigv2")
s3.put_bucket_versioning(Bucket="sigv2", VersioningConfiguration={"Status": "Enabled"})
check(s3.get_bucket_versioning(Bucket="sigv2")["Status"] == "Enabled", "versioning")
s3.put_object(Bucket="sigv2", Key="a/b.txt", Body=b"signed the old way")
listed = s3.list_objects(Bucket="sigv2", Prefix="a/")
check([o["Key"] for o in listed["Contents"]] == ["a/b.txt"], listed)
check(s3.get_object(Bucket="sigv2", Key="a/b.txt")["Body"].read() == b"signed the old way",
      "GET")
check("Buckets" in s3.list_buckets(), "ListBuckets")

try:
    client("not-the-secret").create_bucket(Bucket="sigv2-forged")
    check(False, "a wrong secret was accepted")
except ClientError as e:
    check(e.response["Error"]["Code"] == "SignatureDoesNotMatch", e.response)
try:
    client("not-the-secret").list_objects(Bucket="sigv2")
    check(False, "a wrong secret listed")
except ClientError as e:
    check(e.response["Error"]["Code"] == "SignatureDoesNotMatch", e.response)

for v in s3.list_object_versions(Bucket="sigv2")["Versions"]:
    s3.delete_object(Bucket="sigv2", Key=v["Key"], VersionId=v["VersionId"])
s3.delete_bucket(Bucket="sigv2")
print("boto3 sigv2 ok")
