"""boto3 against a running Vallum: versioning, delete markers, ListObjectVersions pagination,
suspended buckets and `null` versions, object lock (default retention, GOVERNANCE bypass,
COMPLIANCE that nobody can shorten, legal hold), tagging, and lifecycle configuration and
expiry. The server runs its lifecycle worker every second. Exits non-zero on failure."""
import datetime
import os
import sys
import time
import urllib.request

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
    """The S3 error code, HTTP status and headers of a call that must fail."""
    try:
        fn(**kw)
    except ClientError as e:
        return (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"],
                e.response["ResponseMetadata"]["HTTPHeaders"])
    print("FAILED: expected an error from", fn.__name__, kw, file=sys.stderr)
    sys.exit(1)


def all_versions(bucket, **kw):
    """Pages through ListObjectVersions with MaxKeys=1 and returns (key, id, is_marker, latest)."""
    out, km, vm = [], None, None
    while True:
        args = dict(Bucket=bucket, MaxKeys=1, **kw)
        if km is not None:
            args["KeyMarker"] = km
        if vm is not None:
            args["VersionIdMarker"] = vm
        page = s3.list_object_versions(**args)
        entries = [(v["Key"], v["VersionId"], False, v["IsLatest"]) for v in page.get("Versions", [])]
        entries += [(m["Key"], m["VersionId"], True, m["IsLatest"]) for m in page.get("DeleteMarkers", [])]
        check(len(entries) + len(page.get("CommonPrefixes", [])) <= 1, "page size respected")
        out += entries
        if not page["IsTruncated"]:
            return out
        km, vm = page["NextKeyMarker"], page.get("NextVersionIdMarker")


# ---- versioning ----
s3.create_bucket(Bucket="ver")
check("Status" not in s3.get_bucket_versioning(Bucket="ver"), "new buckets are unversioned")
put = s3.put_object(Bucket="ver", Key="doc", Body=b"v0")
check("VersionId" not in put, "unversioned PUT reports no version")
s3.put_bucket_versioning(Bucket="ver", VersioningConfiguration={"Status": "Enabled"})
check(s3.get_bucket_versioning(Bucket="ver")["Status"] == "Enabled", "versioning enabled")
ids = [s3.put_object(Bucket="ver", Key="doc", Body=b"v%d" % i)["VersionId"] for i in (1, 2)]
check(len(set(ids)) == 2 and all(len(i) == 32 for i in ids), "fresh version ids %s" % ids)
check(s3.get_object(Bucket="ver", Key="doc")["Body"].read() == b"v2", "latest is v2")
got = s3.get_object(Bucket="ver", Key="doc", VersionId=ids[0])
check(got["Body"].read() == b"v1" and got["VersionId"] == ids[0], "GET by version")
check(s3.get_object(Bucket="ver", Key="doc", VersionId="null")["Body"].read() == b"v0",
      "the pre-versioning object is the null version")
check(s3.head_object(Bucket="ver", Key="doc", VersionId=ids[0])["ContentLength"] == 2, "HEAD by version")
listing = all_versions("ver")
check(listing == [("doc", ids[1], False, True), ("doc", ids[0], False, False), ("doc", "null", False, False)],
      "versions newest first: %s" % listing)
# Delete markers.
dm = s3.delete_object(Bucket="ver", Key="doc")
check(dm["DeleteMarker"] is True and len(dm["VersionId"]) == 32, "DELETE adds a marker %s" % dm)
code, status, headers = error_of(s3.get_object, Bucket="ver", Key="doc")
check((code, status) == ("NoSuchKey", 404), "GET of a deleted key")
check(headers.get("x-amz-delete-marker") == "true" and headers.get("x-amz-version-id") == dm["VersionId"],
      "delete-marker headers %s" % headers)
code, status, _ = error_of(s3.get_object, Bucket="ver", Key="doc", VersionId=dm["VersionId"])
check((code, status) == ("MethodNotAllowed", 405), "GET of a marker by version id: %s" % code)
check(s3.list_objects_v2(Bucket="ver").get("KeyCount") == 0, "deleted keys are not listed")
check(error_of(s3.get_object, Bucket="ver", Key="doc", VersionId="0" * 32)[0] == "NoSuchVersion", "unknown version")
check(error_of(s3.get_object, Bucket="ver", Key="doc", VersionId="bogus")[0] == "InvalidArgument", "malformed version")
undo = s3.delete_object(Bucket="ver", Key="doc", VersionId=dm["VersionId"])
check(undo.get("DeleteMarker") is True and undo["VersionId"] == dm["VersionId"], "marker removed %s" % undo)
check(s3.get_object(Bucket="ver", Key="doc")["Body"].read() == b"v2", "removing the marker restores v2")
# Copy from an old version; multipart completion creates a version.
cp = s3.copy_object(Bucket="ver", Key="copy", CopySource={"Bucket": "ver", "Key": "doc", "VersionId": ids[0]})
check(cp["CopySourceVersionId"] == ids[0] and len(cp["VersionId"]) == 32, "copy of a version %s" % cp)
check(s3.get_object(Bucket="ver", Key="copy")["Body"].read() == b"v1", "copied bytes")
up = s3.create_multipart_upload(Bucket="ver", Key="doc")
part = s3.upload_part(Bucket="ver", Key="doc", UploadId=up["UploadId"], PartNumber=1, Body=b"mp")
done = s3.complete_multipart_upload(Bucket="ver", Key="doc", UploadId=up["UploadId"],
                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
check(len(done["VersionId"]) == 32, "multipart completion reports its version")
check(len([v for v in all_versions("ver", Prefix="doc") if v[0] == "doc"]) == 4, "four versions of doc")
# Permanently deleting one version; batch delete with versions.
s3.delete_object(Bucket="ver", Key="doc", VersionId=ids[0])
check(ids[0] not in [v[1] for v in all_versions("ver")], "version deleted for good")
res = s3.delete_objects(Bucket="ver", Delete={"Objects": [{"Key": "doc", "VersionId": ids[1]}, {"Key": "copy"}]})
deleted = {(d["Key"], d.get("VersionId"), d.get("DeleteMarker")) for d in res["Deleted"]}
check(("doc", ids[1], None) in deleted, "batch delete of a version %s" % res)
check(any(d["Key"] == "copy" and d.get("DeleteMarker") and d.get("DeleteMarkerVersionId") for d in res["Deleted"]),
      "batch delete without version adds a marker %s" % res)
# Pagination with a delimiter and markers across many keys.
for k in ("a/1", "a/2", "b", "c/x/y"):
    for i in range(2):
        s3.put_object(Bucket="ver", Key=k, Body=b"x")
page_walk = all_versions("ver", Delimiter="/")
check([e[0] for e in page_walk].count("b") == 2, "versions of b across pages %s" % page_walk)
full = s3.list_object_versions(Bucket="ver", Delimiter="/")
check([p["Prefix"] for p in full.get("CommonPrefixes", [])] == ["a/", "c/"], "common prefixes %s" % full)
# Suspended: writes replace the null version, which lists as "null".
s3.put_bucket_versioning(Bucket="ver", VersioningConfiguration={"Status": "Suspended"})
check(s3.get_bucket_versioning(Bucket="ver")["Status"] == "Suspended", "suspended")
s3.put_object(Bucket="ver", Key="b", Body=b"n1")
s3.put_object(Bucket="ver", Key="b", Body=b"n2")
b_versions = [v for v in all_versions("ver", Prefix="b")]
check(len(b_versions) == 3 and b_versions[0][1] == "null" and b_versions[0][3], "null version on top %s" % b_versions)
check(s3.get_object(Bucket="ver", Key="b")["Body"].read() == b"n2", "null version replaced")
dm = s3.delete_object(Bucket="ver", Key="b")
check(dm["DeleteMarker"] is True and dm["VersionId"] == "null", "suspended DELETE makes a null marker %s" % dm)
check(error_of(s3.delete_bucket, Bucket="ver")[0] == "BucketNotEmpty", "versions keep a bucket non-empty")

# ---- tagging ----
s3.create_bucket(Bucket="tags")
s3.put_object(Bucket="tags", Key="t", Body=b"x", Tagging="project=alpha&class=tmp%20data")
tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket="tags", Key="t")["TagSet"]}
check(tags == {"project": "alpha", "class": "tmp data"}, "tags on PUT %s" % tags)
check(s3.get_object(Bucket="tags", Key="t")["TagCount"] == 2, "TagCount on GET")
s3.put_object_tagging(Bucket="tags", Key="t", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
check(s3.get_object_tagging(Bucket="tags", Key="t")["TagSet"] == [{"Key": "k", "Value": "v"}], "tags replaced")
s3.delete_object_tagging(Bucket="tags", Key="t")
check(s3.get_object_tagging(Bucket="tags", Key="t")["TagSet"] == [], "tags deleted")
too_many = [{"Key": "k%d" % i, "Value": "v"} for i in range(11)]
check(error_of(s3.put_object_tagging, Bucket="tags", Key="t", Tagging={"TagSet": too_many})[0] == "InvalidTag",
      "at most 10 tags")
check(error_of(s3.get_object_tagging, Bucket="tags", Key="missing")[0] == "NoSuchKey", "tagging a missing key")

# ---- object lock ----
check(error_of(s3.put_object, Bucket="tags", Key="l", Body=b"x", ObjectLockMode="GOVERNANCE",
               ObjectLockRetainUntilDate=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1))[0]
      == "InvalidRequest", "lock headers need an object-lock bucket")
check(error_of(s3.get_object_lock_configuration, Bucket="tags")[0] == "ObjectLockConfigurationNotFoundError",
      "no lock configuration")
s3.create_bucket(Bucket="worm", ObjectLockEnabledForBucket=True)
check(s3.get_bucket_versioning(Bucket="worm")["Status"] == "Enabled", "object lock enables versioning")
code, status, _ = error_of(s3.put_bucket_versioning, Bucket="worm", VersioningConfiguration={"Status": "Suspended"})
check((code, status) == ("InvalidBucketState", 409), "a locked bucket cannot be suspended: %s" % code)
s3.put_object_lock_configuration(Bucket="worm", ObjectLockConfiguration={
    "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
conf = s3.get_object_lock_configuration(Bucket="worm")["ObjectLockConfiguration"]
check(conf["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 1}, "lock configuration %s" % conf)
# Default GOVERNANCE retention: deletion of the version needs the bypass.
gov = s3.put_object(Bucket="worm", Key="g", Body=b"governed")["VersionId"]
head = s3.head_object(Bucket="worm", Key="g")
check(head["ObjectLockMode"] == "GOVERNANCE", "default retention applied %s" % head)
check(s3.get_object_retention(Bucket="worm", Key="g")["Retention"]["Mode"] == "GOVERNANCE", "GetObjectRetention")
code, status, _ = error_of(s3.delete_object, Bucket="worm", Key="g", VersionId=gov)
check((code, status) == ("AccessDenied", 403), "governance blocks deletion without bypass")
shorter = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
code, _, _ = error_of(s3.put_object_retention, Bucket="worm", Key="g", VersionId=gov,
                      Retention={"Mode": "GOVERNANCE", "RetainUntilDate": shorter})
check(code == "AccessDenied", "shortening GOVERNANCE needs the bypass")
s3.put_object_retention(Bucket="worm", Key="g", VersionId=gov, BypassGovernanceRetention=True,
                        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": shorter})
s3.delete_object(Bucket="worm", Key="g", VersionId=gov, BypassGovernanceRetention=True)
check(gov not in [v[1] for v in all_versions("worm")], "bypass removes a governance version")
# A DELETE without version id only adds a marker, even on locked data.
locked = s3.put_object(Bucket="worm", Key="m", Body=b"x")["VersionId"]
check(s3.delete_object(Bucket="worm", Key="m")["DeleteMarker"] is True, "marker over locked data")
check(s3.get_object(Bucket="worm", Key="m", VersionId=locked)["Body"].read() == b"x", "locked data kept")
# COMPLIANCE: nobody shortens it, the bypass does not help, extension works, then it expires.
until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=4)
comp = s3.put_object(Bucket="worm", Key="c", Body=b"record", ObjectLockMode="COMPLIANCE",
                     ObjectLockRetainUntilDate=until)["VersionId"]
for bypass in (False, True):
    code, _, _ = error_of(s3.delete_object, Bucket="worm", Key="c", VersionId=comp, BypassGovernanceRetention=bypass)
    check(code == "AccessDenied", "COMPLIANCE refuses deletion (bypass=%s)" % bypass)
    code, _, _ = error_of(s3.put_object_retention, Bucket="worm", Key="c", VersionId=comp,
                          BypassGovernanceRetention=bypass,
                          Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until + datetime.timedelta(days=1)})
    check(code == "AccessDenied", "COMPLIANCE cannot become GOVERNANCE (bypass=%s)" % bypass)
    code, _, _ = error_of(s3.put_object_retention, Bucket="worm", Key="c", VersionId=comp,
                          BypassGovernanceRetention=bypass,
                          Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until - datetime.timedelta(seconds=2)})
    check(code == "AccessDenied", "COMPLIANCE cannot be shortened (bypass=%s)" % bypass)
until = until + datetime.timedelta(seconds=1)
s3.put_object_retention(Bucket="worm", Key="c", VersionId=comp,
                        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until})
got = s3.get_object_retention(Bucket="worm", Key="c", VersionId=comp)["Retention"]
check(got["Mode"] == "COMPLIANCE" and abs((got["RetainUntilDate"] - until).total_seconds()) < 1, "extended %s" % got)
# Legal hold protects past the retention date.
s3.put_object_legal_hold(Bucket="worm", Key="c", VersionId=comp, LegalHold={"Status": "ON"})
check(s3.get_object_legal_hold(Bucket="worm", Key="c", VersionId=comp)["LegalHold"]["Status"] == "ON", "hold on")
time.sleep(max(0.0, (until - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) + 0.5)
code, _, _ = error_of(s3.delete_object, Bucket="worm", Key="c", VersionId=comp)
check(code == "AccessDenied", "legal hold blocks deletion after retention")
s3.put_object_legal_hold(Bucket="worm", Key="c", VersionId=comp, LegalHold={"Status": "OFF"})
s3.delete_object(Bucket="worm", Key="c", VersionId=comp)
check(comp not in [v[1] for v in all_versions("worm")], "deletable once retention passed and hold removed")

# ---- lifecycle ----
s3.create_bucket(Bucket="life")
check(error_of(s3.get_bucket_lifecycle_configuration, Bucket="life")[0] == "NoSuchLifecycleConfiguration",
      "no lifecycle yet")
rules = [
    {"ID": "expire-tmp", "Status": "Enabled",
     "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "class", "Value": "scratch"}]}},
     "Expiration": {"Date": datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)}},
    {"ID": "old-versions", "Status": "Enabled", "Filter": {"Prefix": ""},
     "NoncurrentVersionExpiration": {"NoncurrentDays": 30, "NewerNoncurrentVersions": 2}},
    {"ID": "uploads", "Status": "Enabled", "Filter": {"Prefix": "up/"},
     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}},
]
for i in range(5):
    s3.put_object(Bucket="life", Key="tmp/%d" % i, Body=b"x", Tagging="class=scratch")
s3.put_object(Bucket="life", Key="tmp/untagged", Body=b"x")
s3.put_object(Bucket="life", Key="keep", Body=b"x", Tagging="class=scratch")
s3.put_bucket_lifecycle_configuration(Bucket="life", LifecycleConfiguration={"Rules": rules})
back = s3.get_bucket_lifecycle_configuration(Bucket="life")["Rules"]
check([r["ID"] for r in back] == ["expire-tmp", "old-versions", "uploads"], "rules round-trip %s" % back)
check(back[0]["Filter"]["And"]["Prefix"] == "tmp/" and back[0]["Filter"]["And"]["Tags"] == [
    {"Key": "class", "Value": "scratch"}], "filter round-trip %s" % back[0])
check(back[1]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30, "NewerNoncurrentVersions": 2},
      "noncurrent round-trip %s" % back[1])
check(back[2]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}, "abort round-trip")
bad = [{"ID": "x", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 0}}]
check(error_of(s3.put_bucket_lifecycle_configuration, Bucket="life",
               LifecycleConfiguration={"Rules": bad})[0] in ("InvalidArgument", "MalformedXML"), "Days 0 refused")
deadline = time.time() + 30
while time.time() < deadline:
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="life").get("Contents", []))
    if keys == ["keep", "tmp/untagged"]:
        break
    time.sleep(0.5)
check(keys == ["keep", "tmp/untagged"], "the worker expired exactly the matching objects: %s" % keys)
metrics = urllib.request.urlopen(endpoint + "/metrics").read().decode()
check('vallum_lifecycle_pass_actions{action="current_expired"}' in metrics, "lifecycle progress in metrics")
s3.delete_bucket_lifecycle(Bucket="life")
check(error_of(s3.get_bucket_lifecycle_configuration, Bucket="life")[0] == "NoSuchLifecycleConfiguration",
      "lifecycle deleted")
print("boto3 versioning ok")
