//! AWS Signature Version 2 (header authentication): the string a client signs and its
//! HMAC-SHA1 signature. s3s checks SigV2 itself; the server uses this only to tell which form
//! of a bucket's path (`/bucket` or `/bucket/`) a client signed, as clients differ there.

use subtle::ConstantTimeEq;

/// Sub-resources a SigV2 string to sign includes, in this order (S3's list).
pub const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// What a SigV2 header-signed request contributes to its string to sign.
pub struct Request<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// Every header, names lower-cased (in any order; repeated names allowed).
    pub headers: &'a [(String, String)],
    /// The canonical resource's path (`/bucket/key`).
    pub path: &'a str,
    /// The query's pairs, decoded.
    pub query: &'a [(String, String)],
}

/// The string to sign of `req`, as S3 defines it: method, Content-MD5, Content-Type, Date
/// (empty when `x-amz-date` is given), the `x-amz-*` headers, and the canonical resource.
#[must_use]
pub fn string_to_sign(req: &Request<'_>) -> String {
    let one = |name: &str| {
        req.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let has_amz_date = req.headers.iter().any(|(n, _)| n == "x-amz-date");
    let mut out = format!(
        "{}\n{}\n{}\n{}\n",
        req.method,
        one("content-md5"),
        one("content-type"),
        if has_amz_date { "" } else { one("date") }
    );
    let mut amz: Vec<&(String, String)> = req
        .headers
        .iter()
        .filter(|(n, _)| n.starts_with("x-amz-"))
        .collect();
    amz.sort_by(|a, b| a.0.cmp(&b.0));
    let mut i = 0;
    while i < amz.len() {
        let name = &amz[i].0;
        let values: Vec<&str> = amz[i..]
            .iter()
            .take_while(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .collect();
        out.push_str(&format!("{name}:{}\n", values.join(",")));
        i += values.len();
    }
    out.push_str(req.path);
    let mut first = true;
    for sub in SUBRESOURCES {
        if let Some((_, v)) = req.query.iter().find(|(k, _)| k == sub) {
            out.push(if first { '?' } else { '&' });
            first = false;
            out.push_str(sub);
            if !v.is_empty() {
                out.push('=');
                out.push_str(v);
            }
        }
    }
    out
}

/// The Base64 HMAC-SHA1 signature of `string_to_sign` under `secret`.
#[must_use]
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        secret.as_bytes(),
    );
    let tag = aws_lc_rs::hmac::sign(&key, string_to_sign.as_bytes());
    base64_simd::STANDARD.encode_to_string(tag.as_ref())
}

/// Whether `given` is the signature of `string_to_sign` under `secret` (constant time).
#[must_use]
pub fn verify(secret: &str, string_to_sign: &str, given: &str) -> bool {
    let expected = signature(secret, string_to_sign);
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    /// The examples of the S3 documentation (Signing and authenticating REST requests).
    #[test]
    fn the_documented_examples_sign_as_documented() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let headers = h(&[("date", "Tue, 27 Mar 2007 19:36:42 +0000")]);
        let sts = string_to_sign(&Request {
            method: "GET",
            headers: &headers,
            path: "/awsexamplebucket1/photos/puppy.jpg",
            query: &[],
        });
        assert_eq!(
            sts,
            "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg"
        );
        assert_eq!(signature(secret, &sts), "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=");
        assert!(verify(secret, &sts, "qgk2+6Sv9/oM7G3qLEjTH1a1l1g="));
        assert!(!verify(secret, &sts, "qgk2+6Sv9/oM7G3qLEjTH1a1l1h="));

        let headers = h(&[
            ("date", "Tue, 27 Mar 2007 21:15:45 +0000"),
            ("content-type", "image/jpeg"),
        ]);
        let sts = string_to_sign(&Request {
            method: "PUT",
            headers: &headers,
            path: "/awsexamplebucket1/photos/puppy.jpg",
            query: &[],
        });
        assert_eq!(signature(secret, &sts), "iqRzw+ileNPu1fhspnRs8nOjjIA=");

        let headers = h(&[
            ("date", "Tue, 27 Mar 2007 19:42:41 +0000"),
            ("user-agent", "Mozilla/5.0"),
        ]);
        let query = h(&[
            ("prefix", "photos"),
            ("max-keys", "50"),
            ("marker", "puppy"),
        ]);
        let sts = string_to_sign(&Request {
            method: "GET",
            headers: &headers,
            path: "/awsexamplebucket1/",
            query: &query,
        });
        assert_eq!(
            sts,
            "GET\n\n\nTue, 27 Mar 2007 19:42:41 +0000\n/awsexamplebucket1/"
        );
        assert_eq!(signature(secret, &sts), "m0WP8eCtspQl5Ahe6L1SozdX9YA=");

        let headers = h(&[("date", "Tue, 27 Mar 2007 19:44:46 +0000")]);
        let query = h(&[("acl", "")]);
        let sts = string_to_sign(&Request {
            method: "GET",
            headers: &headers,
            path: "/awsexamplebucket1/",
            query: &query,
        });
        assert_eq!(
            sts,
            "GET\n\n\nTue, 27 Mar 2007 19:44:46 +0000\n/awsexamplebucket1/?acl"
        );
        assert_eq!(signature(secret, &sts), "82ZHiFIjc+WbcwFKGUVEQspPn+0=");
        // With x-amz-date the Date line is empty, and x-amz-* headers are listed sorted,
        // repeated ones joined.
        let headers = h(&[
            ("x-amz-meta-b", "2"),
            ("x-amz-date", "Tue, 27 Mar 2007 19:44:46 +0000"),
            ("date", "ignored"),
            ("x-amz-meta-b", " 3 "),
        ]);
        let sts = string_to_sign(&Request {
            method: "PUT",
            headers: &headers,
            path: "/b/k",
            query: &h(&[("uploadId", "u1"), ("partNumber", "2"), ("x", "y")]),
        });
        assert_eq!(
            sts,
            "PUT\n\n\n\nx-amz-date:Tue, 27 Mar 2007 19:44:46 +0000\nx-amz-meta-b:2,3\n/b/k?partNumber=2&uploadId=u1"
        );
    }
}
