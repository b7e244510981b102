//! The one error type of the domain layer. The server maps each variant to exactly one S3
//! error code and HTTP status (see `vallum-server`'s `error.rs`).

use vallum_types::NameError;
use vallum_types::limits::{MAX_USER_METADATA_BYTES, MIN_PART_BYTES};

use crate::blob::BlobError;

/// Result alias of the domain layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything an object-service call can fail with.
/// A document or setting that breaks one of its rules (a lifecycle configuration, a boundary
/// policy, a site's legal profile, tags…): what is wrong, said once. Callers map it to the
/// domain error their request gets (`InvalidArgument`, `InvalidTag`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<String> for Invalid {
    fn from(message: String) -> Self {
        Invalid(message)
    }
}

impl std::ops::Deref for Invalid {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<&str> for Invalid {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<&str> for Invalid {
    fn from(message: &str) -> Self {
        Invalid(message.to_owned())
    }
}

impl From<Invalid> for String {
    fn from(e: Invalid) -> Self {
        e.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bucket does not exist.
    #[error("The specified bucket does not exist")]
    NoSuchBucket,
    /// CreateBucket on a bucket that already exists.
    #[error("Your previous request to create the named bucket succeeded and you already own it")]
    BucketAlreadyOwnedByYou,
    /// DeleteBucket on a bucket that still holds objects.
    #[error("The bucket you tried to delete is not empty")]
    BucketNotEmpty,
    /// The deployment holds the maximum number of buckets.
    #[error("You have attempted to create more buckets than allowed")]
    TooManyBuckets,
    /// The key does not exist.
    #[error("The specified key does not exist")]
    NoSuchKey,
    /// The named version does not exist.
    #[error("The specified version does not exist.")]
    NoSuchVersion,
    /// The version read is a delete marker: 404 `NoSuchKey` for the latest, 405
    /// `MethodNotAllowed` when named; both carry `x-amz-delete-marker: true`.
    #[error("The specified key is a delete marker")]
    DeleteMarker {
        /// The marker's version id.
        version_id: String,
        /// When it was created.
        last_modified_ms: i64,
        /// The request named the version.
        named: bool,
    },
    /// Object lock (or a missing permission) forbids the operation.
    #[error("{0}")]
    AccessDenied(String),
    /// The bucket's state does not allow the request.
    #[error("{0}")]
    InvalidBucketState(String),
    /// The operation does not apply to this resource (e.g. tagging a delete marker).
    #[error("The specified method is not allowed against this resource.")]
    MethodNotAllowed,
    /// A tag set breaks S3's rules.
    #[error("{0}")]
    InvalidTag(String),
    /// GetObjectLockConfiguration on a bucket without object lock.
    #[error("Object Lock configuration does not exist for this bucket")]
    ObjectLockConfigurationNotFound,
    /// GetBucketLifecycleConfiguration on a bucket without one.
    #[error("The lifecycle configuration does not exist")]
    NoSuchLifecycleConfiguration,
    /// GetObjectRetention / GetObjectLegalHold on a version without that setting.
    #[error("The specified object does not have a ObjectLock configuration")]
    NoSuchObjectLockConfiguration,
    /// The multipart upload does not exist (or belongs to another key).
    #[error("The specified multipart upload does not exist")]
    NoSuchUpload,
    /// A bucket name, key or id was refused.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// An argument is out of range or malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// A key administration request names a key the key service does not have.
    #[error("no such key: {0}")]
    NoSuchKmsKey(String),
    /// A request is valid XML but not a valid request.
    #[error("{0}")]
    InvalidRequest(String),
    /// The request document is not well-formed or misses required parts.
    #[error("{0}")]
    MalformedXml(String),
    /// A part named in CompleteMultipartUpload is missing or its ETag does not match.
    #[error("{0}")]
    InvalidPart(String),
    /// Parts in CompleteMultipartUpload are not in ascending order.
    #[error("The list of parts was not in ascending order. Parts must be ordered by part number.")]
    InvalidPartOrder,
    /// A non-final part is smaller than the minimum.
    #[error(
        "Part {part} is {size_bytes} bytes; every part but the last must be at least {MIN_PART_BYTES} bytes"
    )]
    EntityTooSmall {
        /// The offending part number.
        part: u32,
        /// Its size.
        size_bytes: u64,
    },
    /// The body is larger than allowed.
    #[error("Your proposed upload exceeds the maximum allowed size of {0} bytes")]
    EntityTooLarge(u64),
    /// A digest the client sent does not match the data.
    #[error("{0}")]
    BadDigest(String),
    /// The body's SHA-256 differs from the signed `x-amz-content-sha256`.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,
    /// A digest the client sent is not well-formed.
    #[error("{0}")]
    InvalidDigest(String),
    /// The body ended before its declared length, or the client stream broke.
    #[error(
        "You did not provide the number of bytes specified by the Content-Length HTTP header ({got_bytes} of {expected_bytes} received)"
    )]
    IncompleteBody {
        /// Bytes received.
        got_bytes: u64,
        /// Bytes declared.
        expected_bytes: u64,
    },
    /// The client stopped sending the request body (no byte for the body-read timeout).
    #[error(
        "Your socket connection to the server was not read from or written to within the timeout period."
    )]
    RequestTimeout,
    /// The client's body stream failed.
    #[error("The request body could not be read: {0}")]
    ClientStream(String),
    /// User metadata is too large.
    #[error(
        "Your metadata headers are {0} bytes; they may not exceed {MAX_USER_METADATA_BYTES} bytes"
    )]
    MetadataTooLarge(usize),
    /// A conditional request's precondition does not hold.
    #[error("At least one of the pre-conditions you specified did not hold")]
    PreconditionFailed,
    /// A conditional GET/HEAD whose representation did not change.
    #[error("Not Modified")]
    NotModified {
        /// The representation's ETag (without quotes), which a 304 carries.
        etag: String,
        /// Its Last-Modified, ms since the epoch.
        last_modified_ms: i64,
    },
    /// The range does not overlap the object.
    #[error("The requested range is not satisfiable")]
    InvalidRange,
    /// No placement satisfies the bucket's boundary policy; the message names each rejected
    /// site and the rule it breaks.
    #[error("{0}")]
    NoCompliantPlacement(String),
    /// The metadata store or the storage site is unreachable right now; the client should
    /// retry. The text says which, and why.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// The object's key cannot be used (disabled, pending deletion, destroyed, or its
    /// provider unreachable).
    #[error("The object's encryption key is not available: {0}")]
    KeyUnavailable(String),
    /// The object's data key is wrapped by a key provider the deployment is not configured
    /// with (the configuration's `[keys] provider` changed): a fault of the deployment, not of
    /// the key or the request.
    #[error(
        "The object's data key is held by key provider {held_by:?}, which this deployment does not use (it uses {configured:?})"
    )]
    KeyProviderMismatch {
        /// The provider that wrapped the object's data key.
        held_by: String,
        /// The provider the deployment is configured with.
        configured: String,
    },
    /// The object's (or the request's) key-encryption key does not exist at the provider.
    #[error("The encryption key {0} does not exist")]
    KeyNotFound(String),
    /// The key provider cannot be reached or did not answer in time; the client should retry.
    #[error("The key service is unavailable: {0}")]
    KeyServiceUnavailable(String),
    /// The key provider refused to use the key (its policy, the justification, credentials).
    #[error("The key provider refused to use the object's key: {0}")]
    KeyRefused(String),
    /// Stored ciphertext failed authentication: tampered or damaged on the site.
    #[error("stored data failed its integrity check: {0}")]
    Integrity(String),
    /// A storage site or the metadata store has no room left; nothing was stored. The text
    /// says which (it is logged, not sent).
    #[error("storage is full: {0}")]
    StorageFull(String),
    /// A blob store failure.
    #[error("storage site error: {0}")]
    Blob(BlobError),
    /// A metadata store failure.
    #[error("metadata store error: {0}")]
    Meta(MetaError),
}

impl From<BlobError> for Error {
    fn from(err: BlobError) -> Self {
        match err {
            BlobError::Io(ref io) if io.raw_os_error() == Some(28) => {
                Error::StorageFull(format!("storage site: {io}"))
            }
            BlobError::Source(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                Error::RequestTimeout
            }
            BlobError::Source(io) => Error::ClientStream(io.to_string()),
            // Clients retry a 503: the site may come back.
            BlobError::Unavailable(why) => Error::Unavailable(why),
            other => Error::Blob(other),
        }
    }
}

impl From<MetaError> for Error {
    fn from(err: MetaError) -> Self {
        match err {
            MetaError::NoSuchBucket => Error::NoSuchBucket,
            MetaError::BucketExists => Error::BucketAlreadyOwnedByYou,
            MetaError::BucketNotEmpty => Error::BucketNotEmpty,
            MetaError::PreconditionFailed => Error::PreconditionFailed,
            MetaError::NoSuchUpload => Error::NoSuchUpload,
            MetaError::NoSuchKey => Error::NoSuchKey,
            MetaError::NoSuchVersion => Error::NoSuchVersion,
            MetaError::DeleteMarker => Error::MethodNotAllowed,
            MetaError::Locked(msg) => Error::AccessDenied(msg),
            MetaError::InvalidBucketState(msg) => Error::InvalidBucketState(msg),
            MetaError::Invalid(msg) => Error::InvalidRequest(msg),
            MetaError::PartChanged(n) => Error::InvalidPart(format!(
                "part {n} was replaced while the upload was being completed"
            )),
            MetaError::Unavailable(msg) => Error::Unavailable(msg),
            MetaError::StorageFull(msg) => Error::StorageFull(format!("metadata store: {msg}")),
            other => Error::Meta(other),
        }
    }
}

/// Why a metadata operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetaError {
    /// The bucket does not exist.
    #[error("no such bucket")]
    NoSuchBucket,
    /// The bucket already exists.
    #[error("bucket exists")]
    BucketExists,
    /// The bucket still holds objects.
    #[error("bucket not empty")]
    BucketNotEmpty,
    /// A write condition did not hold.
    #[error("precondition failed")]
    PreconditionFailed,
    /// The upload does not exist.
    #[error("no such upload")]
    NoSuchUpload,
    /// The key has no current version (or none at all).
    #[error("no such key")]
    NoSuchKey,
    /// The named version does not exist.
    #[error("no such version")]
    NoSuchVersion,
    /// The named version is a delete marker, which the operation does not apply to.
    #[error("the version is a delete marker")]
    DeleteMarker,
    /// Object lock protects the version; the text says how.
    #[error("{0}")]
    Locked(String),
    /// The bucket's state does not allow the change.
    #[error("{0}")]
    InvalidBucketState(String),
    /// The change is not allowed.
    #[error("{0}")]
    Invalid(String),
    /// A part named in a completion is no longer the part stored under that number.
    #[error("part {0} changed during completion")]
    PartChanged(u32),
    /// The store cannot be reached now; retrying later may succeed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The store's disk (or its database quota) is full: nothing was written; writes succeed
    /// again once space returns.
    #[error("the metadata store is full: {0}")]
    StorageFull(String),
    /// The database holds fewer commits than it had acknowledged: committed state was lost
    /// (its write-ahead file deleted, an older copy restored over it). It is not served.
    #[error(
        "{path} lost committed state: it holds {found} commits, but {recorded} had been acknowledged (was its write-ahead file {path}-wal deleted, or an older copy restored?). Refusing to serve it. Restore the metadata from a backup taken after the loss began, or, to accept the loss and continue from this state, delete {path}-commits (the transparency log keeps the record of what was acknowledged)"
    )]
    LostCommits {
        /// The database file.
        path: String,
        /// The high-water count recorded beside it.
        recorded: i64,
        /// The count it holds.
        found: i64,
    },
    /// A stored row could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// Any other backend failure.
    #[error("backend: {0}")]
    Backend(String),
}

impl MetaError {
    /// A refusal decided by the stored state (a failed condition, a missing or locked record),
    /// not a failure of the store: the transaction it happened in is intact.
    #[must_use]
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            Self::Unavailable(_)
                | Self::StorageFull(_)
                | Self::LostCommits { .. }
                | Self::Corrupt(_)
                | Self::Backend(_)
        )
    }
}

/// Result alias for metadata operations.
pub type MetaResult<T> = Result<T, MetaError>;
