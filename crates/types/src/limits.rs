//! Every limit Vallum enforces, as a named constant (DESIGN.md invariant 7).
//!
//! Values follow Amazon S3 where S3 documents one, so that clients behave the same.

/// Largest object key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most parts a multipart upload may have; part numbers run from 1 to this.
pub const MAX_PARTS: u32 = 10_000;
/// Smallest size of every part but the last.
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// Largest part.
pub const MAX_PART_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// Largest object a single PUT (or CopyObject) may create.
pub const MAX_PUT_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// Largest object overall (a multipart upload).
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// Most keys (objects plus common prefixes) in one list page; also the most uploads or parts.
pub const MAX_LIST_KEYS: usize = 1000;
/// Most keys in one DeleteObjects request.
pub const MAX_DELETE_OBJECTS: usize = 1000;
/// Largest total size of user metadata (`x-amz-meta-*` names and values), in bytes.
pub const MAX_USER_METADATA_BYTES: usize = 2 * 1024;
/// Largest request header section (all names and values), in bytes.
pub const MAX_REQUEST_HEADER_BYTES: usize = 16 * 1024;
/// Largest XML or JSON request document (CompleteMultipartUpload with 10,000 parts fits).
pub const MAX_XML_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Bucket name length bounds.
pub const MIN_BUCKET_NAME_BYTES: usize = 3;
/// Bucket name length bounds.
pub const MAX_BUCKET_NAME_BYTES: usize = 63;
/// How many buckets one deployment may hold.
pub const MAX_BUCKETS: usize = 10_000;
/// Size of the buffer used when streaming object data from disk.
pub const STREAM_CHUNK_BYTES: usize = 256 * 1024;
/// How many metadata rows the list engine reads per round trip.
pub const LIST_BATCH_ROWS: usize = 1000;
/// Seconds a client may take to send a request's header section (slow-client guard).
pub const HEADER_READ_TIMEOUT_SECS: u64 = 30;
/// Seconds a graceful shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE_SECS: u64 = 10;
/// Most tags on one object (S3's limit).
pub const MAX_OBJECT_TAGS: usize = 10;
/// Most tags on a bucket (S3's limit).
pub const MAX_BUCKET_TAGS: usize = 50;
/// Longest tag key, in Unicode characters.
pub const MAX_TAG_KEY_CHARS: usize = 128;
/// Longest tag value, in Unicode characters.
pub const MAX_TAG_VALUE_CHARS: usize = 256;
/// Most rules in one lifecycle configuration (S3's limit).
pub const MAX_LIFECYCLE_RULES: usize = 1000;
/// Most rules in a bucket's CORS configuration (S3's limit).
pub const MAX_CORS_RULES: usize = 100;
/// Longest default or per-object retention a request may set, in days (100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// How many versions the lifecycle worker examines per metadata round trip.
pub const LIFECYCLE_BATCH_VERSIONS: usize = 500;
/// Most storage sites one deployment's registry holds.
pub const MAX_SITES: usize = 1000;
/// Most replicas a boundary policy may ask for.
pub const MAX_REPLICAS: u32 = 16;
/// Longest site id, policy name or operator name, in bytes.
pub const MAX_RESIDENCY_NAME_BYTES: usize = 128;
/// Most entries in one list of a boundary policy or site profile (allowed jurisdictions,
/// forbidden exposures, required certifications, certifications held).
pub const MAX_RESIDENCY_LIST_ENTRIES: usize = 64;
/// Largest exposure-rules file.
pub const MAX_EXPOSURE_RULES_BYTES: usize = 256 * 1024;
/// Free space below which a disk (a local site, or the data directory holding the metadata
/// store and the log) counts as full in `/health`.
pub const LOW_SPACE_BYTES: u64 = 1024 * 1024;
/// Seconds a connection may stay open with no request in progress and no byte moving in either
/// direction (idle keep-alive connections, clients that never send a request, clients that
/// stop reading a response).
pub const IDLE_CONNECTION_TIMEOUT_SECS: u64 = 60;
/// Seconds a request body may go without a byte arriving before the request fails with
/// `RequestTimeout` (S3's answer to a client that stops sending).
pub const BODY_READ_TIMEOUT_SECS: u64 = 30;
/// Most client connections served at once, before the descriptor limit lowers it.
pub const MAX_CONNECTIONS: usize = 8192;
/// File descriptors kept back from client connections for the stores, the log, remote sites
/// and key services.
pub const RESERVED_DESCRIPTORS: u64 = 256;
/// Longest error or diagnostic text written into one log line, in bytes.
pub const MAX_LOGGED_ERROR_BYTES: usize = 1024;
/// Longest line the server writes to its log; longer ones are cut, saying how much.
pub const MAX_LOG_LINE_BYTES: usize = 16 * 1024;

/// Request bodies up to this size (decoded) are read whole before the request is handled, so
/// an answer given before the body is used (a failed precondition, a refusal) still leaves
/// the connection reusable: a client that sent the body gets no reset on its next request.
pub const PREREAD_BODY_BYTES: u64 = 64 * 1024;
