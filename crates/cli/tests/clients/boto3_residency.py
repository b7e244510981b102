"""Writes refused by a boundary policy, through boto3: PutObject, CreateMultipartUpload and
CopyObject all fail with the Vallum error code (403) and a message naming the site and the
rule; nothing is stored.

Usage: boto3_residency.py BUCKET_REFUSED BUCKET_ALLOWED (credentials and endpoint from the
environment).
"""

import sys

import boto3
import botocore.exceptions

CODE = "XVallumNoCompliantPlacement"


def refused(call, what):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        err = e.response["Error"]
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        assert err["Code"] == CODE, (what, err)
        assert status == 403, (what, status)
        assert "site local:" in err["Message"], (what, err["Message"])
        return err["Message"]
    raise AssertionError(f"{what} was not refused")


def main():
    refused_bucket, allowed_bucket = sys.argv[1], sys.argv[2]
    s3 = boto3.client("s3")
    msg = refused(
        lambda: s3.put_object(Bucket=refused_bucket, Key="a", Body=b"x" * 10), "put"
    )
    assert "outside [DE] allowed by policy de-only" in msg, msg
    refused(
        lambda: s3.create_multipart_upload(Bucket=refused_bucket, Key="m"), "create upload"
    )
    s3.put_object(Bucket=allowed_bucket, Key="src", Body=b"source bytes")
    refused(
        lambda: s3.copy_object(
            Bucket=refused_bucket, Key="c", CopySource={"Bucket": allowed_bucket, "Key": "src"}
        ),
        "copy",
    )
    listed = s3.list_objects_v2(Bucket=refused_bucket)
    assert listed.get("KeyCount", 0) == 0, listed

    print("boto3 residency ok")


if __name__ == "__main__":
    main()
