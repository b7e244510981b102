"""boto3 against a running Vallum whose keyring holds the keys `records` and `hr`: bucket default
encryption (Put/Get/DeleteBucketEncryption), a per-request KMS key (by id and by ARN), the
encryption headers on PUT/HEAD/GET, unknown keys, and SSE-C, which S3 refuses over plain HTTP.
Exits non-zero on failure."""
import os
import sys

import boto3
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


def error_of(fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    print("FAILED: expected an error from", fn.__name__, kw, file=sys.stderr)
    sys.exit(1)


s3.create_bucket(Bucket="enc")
# Without a configuration the bucket still encrypts, under the deployment default, but has no
# configuration to return.
check(error_of(s3.get_bucket_encryption, Bucket="enc")
      == ("ServerSideEncryptionConfigurationNotFoundError", 404), "no configuration")
put = s3.put_object(Bucket="enc", Key="before", Body=b"x" * 1000)
check(put["ServerSideEncryption"] == "aws:kms" and put["SSEKMSKeyId"] == "vallum-default", put)
# SSE-S3 asked for is reported as such (under the deployment's key); SSE headers on a read are
# refused.
put = s3.put_object(Bucket="enc", Key="s3", Body=b"x", ServerSideEncryption="AES256")
check(put["ServerSideEncryption"] == "AES256" and "SSEKMSKeyId" not in put, put)
head = s3.head_object(Bucket="enc", Key="s3")
check(head["ServerSideEncryption"] == "AES256" and "SSEKMSKeyId" not in head, head)


def sse_header(params, **_):
    params["headers"]["x-amz-server-side-encryption"] = "AES256"


s3.meta.events.register("before-call.s3.GetObject", sse_header)
check(error_of(s3.get_object, Bucket="enc", Key="s3") == ("InvalidArgument", 400), "SSE on GET")
s3.meta.events.unregister("before-call.s3.GetObject", sse_header)
check(error_of(s3.put_object, Bucket="enc", Key="x", Body=b"1", ServerSideEncryption="aws:kms")
      == ("InvalidArgument", 400), "aws:kms without a key id or a bucket key")

# Default encryption under `records`.
s3.put_bucket_encryption(Bucket="enc", ServerSideEncryptionConfiguration={"Rules": [{
    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "records"},
    "BucketKeyEnabled": True}]})
rule = s3.get_bucket_encryption(Bucket="enc")["ServerSideEncryptionConfiguration"]["Rules"][0]
check(rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms",
                                                      "KMSMasterKeyID": "records"}, rule)
check(rule["BucketKeyEnabled"] is True, rule)
put = s3.put_object(Bucket="enc", Key="default", Body=b"d" * 70000)
check(put["SSEKMSKeyId"] == "records", put)
head = s3.head_object(Bucket="enc", Key="default")
check(head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == "records", head)
got = s3.get_object(Bucket="enc", Key="default")
check(got["SSEKMSKeyId"] == "records" and got["Body"].read() == b"d" * 70000, "GET under records")
check(s3.head_object(Bucket="enc", Key="before")["SSEKMSKeyId"] == "vallum-default",
      "objects written before keep their key")

# A request can name another key, by id or ARN; multipart and copy too.
put = s3.put_object(Bucket="enc", Key="hr-file", Body=b"h", ServerSideEncryption="aws:kms",
                    SSEKMSKeyId="hr")
check(put["SSEKMSKeyId"] == "hr", put)
put = s3.put_object(Bucket="enc", Key="hr-arn", Body=b"h", ServerSideEncryption="aws:kms",
                    SSEKMSKeyId="arn:aws:kms:eu-west-3:111122223333:key/hr")
check(put["SSEKMSKeyId"] == "hr", put)
mpu = s3.create_multipart_upload(Bucket="enc", Key="mp", ServerSideEncryption="aws:kms",
                                 SSEKMSKeyId="hr")
part = s3.upload_part(Bucket="enc", Key="mp", UploadId=mpu["UploadId"], PartNumber=1,
                      Body=b"m" * 1000)
s3.complete_multipart_upload(Bucket="enc", Key="mp", UploadId=mpu["UploadId"],
                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
check(s3.head_object(Bucket="enc", Key="mp")["SSEKMSKeyId"] == "hr", "multipart under hr")
copy = s3.copy_object(Bucket="enc", Key="copied", CopySource={"Bucket": "enc", "Key": "hr-file"},
                      ServerSideEncryption="aws:kms", SSEKMSKeyId="records")
check(s3.head_object(Bucket="enc", Key="copied")["SSEKMSKeyId"] == "records", copy)

# Bad input: an unknown key, a key id without aws:kms, an unknown algorithm, SSE-C over HTTP.
check(error_of(s3.put_object, Bucket="enc", Key="x", Body=b"1", ServerSideEncryption="aws:kms",
               SSEKMSKeyId="nope") == ("InvalidArgument", 400), "unknown key")
check(error_of(s3.put_bucket_encryption, Bucket="enc", ServerSideEncryptionConfiguration={
    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                      "KMSMasterKeyID": "nope"}}]})
      == ("InvalidArgument", 400), "unknown key in the bucket configuration")
check(error_of(s3.put_bucket_encryption, Bucket="enc", ServerSideEncryptionConfiguration={
    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256",
                                                      "KMSMasterKeyID": "records"}}]})
      == ("InvalidArgument", 400), "key id with AES256")
check(error_of(s3.put_object, Bucket="enc", Key="x", Body=b"1", SSECustomerAlgorithm="AES256",
               SSECustomerKey="k" * 32) == ("InvalidRequest", 400), "SSE-C over HTTP")
check(error_of(s3.head_object, Bucket="enc", Key="nothing-here") == ("404", 404), "HEAD")
check(rule and error_of(s3.get_object, Bucket="enc", Key="x") == ("NoSuchKey", 404),
      "failed writes left nothing")

# aws:kms without a key id takes the bucket's key.
put = s3.put_object(Bucket="enc", Key="bucket-key", Body=b"b", ServerSideEncryption="aws:kms")
check(put["SSEKMSKeyId"] == "records", put)

# A bucket default of SSE-S3: its objects are reported as SSE-S3, explicit aws:kms still works.
s3.put_bucket_encryption(Bucket="enc", ServerSideEncryptionConfiguration={"Rules": [{
    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
put = s3.put_object(Bucket="enc", Key="default-s3", Body=b"s")
check(put["ServerSideEncryption"] == "AES256", put)
check(s3.get_object(Bucket="enc", Key="default-s3")["ServerSideEncryption"] == "AES256", "GET")
put = s3.put_object(Bucket="enc", Key="explicit-kms", Body=b"k", ServerSideEncryption="aws:kms",
                    SSEKMSKeyId="hr")
check(put["ServerSideEncryption"] == "aws:kms" and put["SSEKMSKeyId"] == "hr", put)

s3.delete_bucket_encryption(Bucket="enc")
check(error_of(s3.get_bucket_encryption, Bucket="enc")
      == ("ServerSideEncryptionConfigurationNotFoundError", 404), "deleted configuration")
check(s3.put_object(Bucket="enc", Key="after", Body=b"a")["SSEKMSKeyId"] == "vallum-default",
      "back to the deployment default")
print("boto3 keys ok")
