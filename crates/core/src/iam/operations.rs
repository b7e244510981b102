//! The S3 operation table: every operation of the wire protocol (s3s names them) and what the
//! decision point requires for it. The requirement is an exhaustive match, so an operation
//! added to the table without its action does not compile; an operation s3s dispatches that
//! is not in the table is refused as not implemented, never silently denied (a test compares
//! the table with s3s's own list of operations).

/// What an S3 operation needs from the decision point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required {
    /// This action on the request's resource, decided before the handler runs.
    Action(&'static str),
    /// This action on each object the request names, decided by the handler object by object
    /// (DeleteObjects).
    PerObject(&'static str),
    /// Not an operation of this service (S3 Express sessions and directory buckets, Object
    /// Lambda responses): answered NotImplemented before any decision.
    Unsupported,
}

impl Required {
    /// The action the requirement names, if any.
    #[must_use]
    pub fn action(self) -> Option<&'static str> {
        match self {
            Self::Action(a) | Self::PerObject(a) => Some(a),
            Self::Unsupported => None,
        }
    }
}

macro_rules! operations {
    ($($op:ident),* $(,)?) => {
        /// An S3 operation, by its API name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum S3Operation {
            $($op,)*
        }

        impl S3Operation {
            /// Every operation of the table.
            pub const ALL: &'static [S3Operation] = &[$(S3Operation::$op),*];

            /// The operation's API name (s3s's `S3Operation::name`).
            #[must_use]
            pub fn name(self) -> &'static str {
                match self {
                    $(S3Operation::$op => stringify!($op),)*
                }
            }

            /// The operation named `name`, if the table has it.
            #[must_use]
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $(stringify!($op) => Some(S3Operation::$op),)*
                    _ => None,
                }
            }
        }
    };
}

operations! {
    AbortMultipartUpload,
    CompleteMultipartUpload,
    CopyObject,
    CreateBucket,
    CreateBucketMetadataTableConfiguration,
    CreateMultipartUpload,
    CreateSession,
    DeleteBucket,
    DeleteBucketAnalyticsConfiguration,
    DeleteBucketCors,
    DeleteBucketEncryption,
    DeleteBucketIntelligentTieringConfiguration,
    DeleteBucketInventoryConfiguration,
    DeleteBucketLifecycle,
    DeleteBucketMetadataTableConfiguration,
    DeleteBucketMetricsConfiguration,
    DeleteBucketOwnershipControls,
    DeleteBucketPolicy,
    DeleteBucketReplication,
    DeleteBucketTagging,
    DeleteBucketWebsite,
    DeleteObject,
    DeleteObjectTagging,
    DeleteObjects,
    DeletePublicAccessBlock,
    GetBucketAccelerateConfiguration,
    GetBucketAcl,
    GetBucketAnalyticsConfiguration,
    GetBucketCors,
    GetBucketEncryption,
    GetBucketIntelligentTieringConfiguration,
    GetBucketInventoryConfiguration,
    GetBucketLifecycleConfiguration,
    GetBucketLocation,
    GetBucketLogging,
    GetBucketMetadataTableConfiguration,
    GetBucketMetricsConfiguration,
    GetBucketNotificationConfiguration,
    GetBucketOwnershipControls,
    GetBucketPolicy,
    GetBucketPolicyStatus,
    GetBucketReplication,
    GetBucketRequestPayment,
    GetBucketTagging,
    GetBucketVersioning,
    GetBucketWebsite,
    GetObject,
    GetObjectAcl,
    GetObjectAttributes,
    GetObjectLegalHold,
    GetObjectLockConfiguration,
    GetObjectRetention,
    GetObjectTagging,
    GetObjectTorrent,
    GetPublicAccessBlock,
    HeadBucket,
    HeadObject,
    ListBucketAnalyticsConfigurations,
    ListBucketIntelligentTieringConfigurations,
    ListBucketInventoryConfigurations,
    ListBucketMetricsConfigurations,
    ListBuckets,
    ListDirectoryBuckets,
    ListMultipartUploads,
    ListObjectVersions,
    ListObjects,
    ListObjectsV2,
    ListParts,
    PostObject,
    PutBucketAccelerateConfiguration,
    PutBucketAcl,
    PutBucketAnalyticsConfiguration,
    PutBucketCors,
    PutBucketEncryption,
    PutBucketIntelligentTieringConfiguration,
    PutBucketInventoryConfiguration,
    PutBucketLifecycleConfiguration,
    PutBucketLogging,
    PutBucketMetricsConfiguration,
    PutBucketNotificationConfiguration,
    PutBucketOwnershipControls,
    PutBucketPolicy,
    PutBucketReplication,
    PutBucketRequestPayment,
    PutBucketTagging,
    PutBucketVersioning,
    PutBucketWebsite,
    PutObject,
    PutObjectAcl,
    PutObjectLegalHold,
    PutObjectLockConfiguration,
    PutObjectRetention,
    PutObjectTagging,
    PutPublicAccessBlock,
    RestoreObject,
    SelectObjectContent,
    UploadPart,
    UploadPartCopy,
    WriteGetObjectResponse,
}

impl S3Operation {
    /// What the operation needs; `version` when the request names an object version.
    #[must_use]
    pub fn required(self, version: bool) -> Required {
        match self {
            Self::AbortMultipartUpload => Required::Action("s3:AbortMultipartUpload"),
            Self::CompleteMultipartUpload => Required::Action("s3:PutObject"),
            Self::CopyObject => Required::Action("s3:PutObject"),
            Self::CreateBucket => Required::Action("s3:CreateBucket"),
            Self::CreateBucketMetadataTableConfiguration => Required::Action("s3:OtherOperation"),
            Self::CreateMultipartUpload => Required::Action("s3:PutObject"),
            Self::CreateSession => Required::Unsupported,
            Self::DeleteBucket => Required::Action("s3:DeleteBucket"),
            Self::DeleteBucketAnalyticsConfiguration => Required::Action("s3:OtherOperation"),
            Self::DeleteBucketCors => Required::Action("s3:PutBucketCORS"),
            Self::DeleteBucketEncryption => Required::Action("s3:PutEncryptionConfiguration"),
            Self::DeleteBucketIntelligentTieringConfiguration => {
                Required::Action("s3:OtherOperation")
            }
            Self::DeleteBucketInventoryConfiguration => Required::Action("s3:OtherOperation"),
            Self::DeleteBucketLifecycle => Required::Action("s3:PutLifecycleConfiguration"),
            Self::DeleteBucketMetadataTableConfiguration => Required::Action("s3:OtherOperation"),
            Self::DeleteBucketMetricsConfiguration => Required::Action("s3:OtherOperation"),
            Self::DeleteBucketOwnershipControls => {
                Required::Action("s3:PutBucketOwnershipControls")
            }
            Self::DeleteBucketPolicy => Required::Action("s3:DeleteBucketPolicy"),
            Self::DeleteBucketReplication => Required::Action("s3:PutReplicationConfiguration"),
            Self::DeleteBucketTagging => Required::Action("s3:PutBucketTagging"),
            Self::DeleteBucketWebsite => Required::Action("s3:DeleteBucketWebsite"),
            Self::DeleteObject if version => Required::Action("s3:DeleteObjectVersion"),
            Self::DeleteObject => Required::Action("s3:DeleteObject"),
            Self::DeleteObjectTagging if version => {
                Required::Action("s3:DeleteObjectVersionTagging")
            }
            Self::DeleteObjectTagging => Required::Action("s3:DeleteObjectTagging"),
            Self::DeleteObjects => Required::PerObject("s3:DeleteObject"),
            Self::DeletePublicAccessBlock => Required::Action("s3:PutBucketPublicAccessBlock"),
            Self::GetBucketAccelerateConfiguration => {
                Required::Action("s3:GetAccelerateConfiguration")
            }
            Self::GetBucketAcl => Required::Action("s3:GetBucketAcl"),
            Self::GetBucketAnalyticsConfiguration => Required::Action("s3:OtherOperation"),
            Self::GetBucketCors => Required::Action("s3:GetBucketCORS"),
            Self::GetBucketEncryption => Required::Action("s3:GetEncryptionConfiguration"),
            Self::GetBucketIntelligentTieringConfiguration => Required::Action("s3:OtherOperation"),
            Self::GetBucketInventoryConfiguration => Required::Action("s3:OtherOperation"),
            Self::GetBucketLifecycleConfiguration => {
                Required::Action("s3:GetLifecycleConfiguration")
            }
            Self::GetBucketLocation => Required::Action("s3:GetBucketLocation"),
            Self::GetBucketLogging => Required::Action("s3:GetBucketLogging"),
            Self::GetBucketMetadataTableConfiguration => Required::Action("s3:OtherOperation"),
            Self::GetBucketMetricsConfiguration => Required::Action("s3:OtherOperation"),
            Self::GetBucketNotificationConfiguration => {
                Required::Action("s3:GetBucketNotification")
            }
            Self::GetBucketOwnershipControls => Required::Action("s3:GetBucketOwnershipControls"),
            Self::GetBucketPolicy => Required::Action("s3:GetBucketPolicy"),
            Self::GetBucketPolicyStatus => Required::Action("s3:GetBucketPolicyStatus"),
            Self::GetBucketReplication => Required::Action("s3:GetReplicationConfiguration"),
            Self::GetBucketRequestPayment => Required::Action("s3:GetBucketRequestPayment"),
            Self::GetBucketTagging => Required::Action("s3:GetBucketTagging"),
            Self::GetBucketVersioning => Required::Action("s3:GetBucketVersioning"),
            Self::GetBucketWebsite => Required::Action("s3:GetBucketWebsite"),
            Self::GetObject if version => Required::Action("s3:GetObjectVersion"),
            Self::GetObject => Required::Action("s3:GetObject"),
            Self::GetObjectAcl => Required::Action("s3:GetObjectAcl"),
            Self::GetObjectAttributes => Required::Action("s3:GetObjectAttributes"),
            Self::GetObjectLegalHold => Required::Action("s3:GetObjectLegalHold"),
            Self::GetObjectLockConfiguration => {
                Required::Action("s3:GetBucketObjectLockConfiguration")
            }
            Self::GetObjectRetention => Required::Action("s3:GetObjectRetention"),
            Self::GetObjectTagging if version => Required::Action("s3:GetObjectVersionTagging"),
            Self::GetObjectTagging => Required::Action("s3:GetObjectTagging"),
            Self::GetObjectTorrent => Required::Action("s3:OtherOperation"),
            Self::GetPublicAccessBlock => Required::Action("s3:GetBucketPublicAccessBlock"),
            Self::HeadBucket => Required::Action("s3:ListBucket"),
            Self::HeadObject if version => Required::Action("s3:GetObjectVersion"),
            Self::HeadObject => Required::Action("s3:GetObject"),
            Self::ListBucketAnalyticsConfigurations => Required::Action("s3:OtherOperation"),
            Self::ListBucketIntelligentTieringConfigurations => {
                Required::Action("s3:OtherOperation")
            }
            Self::ListBucketInventoryConfigurations => Required::Action("s3:OtherOperation"),
            Self::ListBucketMetricsConfigurations => Required::Action("s3:OtherOperation"),
            Self::ListBuckets => Required::Action("s3:ListAllMyBuckets"),
            Self::ListDirectoryBuckets => Required::Unsupported,
            Self::ListMultipartUploads => Required::Action("s3:ListBucketMultipartUploads"),
            Self::ListObjectVersions => Required::Action("s3:ListBucketVersions"),
            Self::ListObjects => Required::Action("s3:ListBucket"),
            Self::ListObjectsV2 => Required::Action("s3:ListBucket"),
            Self::ListParts => Required::Action("s3:ListMultipartUploadParts"),
            Self::PostObject => Required::Action("s3:PutObject"),
            Self::PutBucketAccelerateConfiguration => {
                Required::Action("s3:PutAccelerateConfiguration")
            }
            Self::PutBucketAcl => Required::Action("s3:PutBucketAcl"),
            Self::PutBucketAnalyticsConfiguration => Required::Action("s3:OtherOperation"),
            Self::PutBucketCors => Required::Action("s3:PutBucketCORS"),
            Self::PutBucketEncryption => Required::Action("s3:PutEncryptionConfiguration"),
            Self::PutBucketIntelligentTieringConfiguration => Required::Action("s3:OtherOperation"),
            Self::PutBucketInventoryConfiguration => Required::Action("s3:OtherOperation"),
            Self::PutBucketLifecycleConfiguration => {
                Required::Action("s3:PutLifecycleConfiguration")
            }
            Self::PutBucketLogging => Required::Action("s3:PutBucketLogging"),
            Self::PutBucketMetricsConfiguration => Required::Action("s3:OtherOperation"),
            Self::PutBucketNotificationConfiguration => {
                Required::Action("s3:PutBucketNotification")
            }
            Self::PutBucketOwnershipControls => Required::Action("s3:PutBucketOwnershipControls"),
            Self::PutBucketPolicy => Required::Action("s3:PutBucketPolicy"),
            Self::PutBucketReplication => Required::Action("s3:PutReplicationConfiguration"),
            Self::PutBucketRequestPayment => Required::Action("s3:PutBucketRequestPayment"),
            Self::PutBucketTagging => Required::Action("s3:PutBucketTagging"),
            Self::PutBucketVersioning => Required::Action("s3:PutBucketVersioning"),
            Self::PutBucketWebsite => Required::Action("s3:PutBucketWebsite"),
            Self::PutObject => Required::Action("s3:PutObject"),
            Self::PutObjectAcl => Required::Action("s3:PutObjectAcl"),
            Self::PutObjectLegalHold => Required::Action("s3:PutObjectLegalHold"),
            Self::PutObjectLockConfiguration => {
                Required::Action("s3:PutBucketObjectLockConfiguration")
            }
            Self::PutObjectRetention => Required::Action("s3:PutObjectRetention"),
            Self::PutObjectTagging if version => Required::Action("s3:PutObjectVersionTagging"),
            Self::PutObjectTagging => Required::Action("s3:PutObjectTagging"),
            Self::PutPublicAccessBlock => Required::Action("s3:PutBucketPublicAccessBlock"),
            Self::RestoreObject => Required::Action("s3:RestoreObject"),
            Self::SelectObjectContent => Required::Action("s3:GetObject"),
            Self::UploadPart => Required::Action("s3:PutObject"),
            Self::UploadPartCopy => Required::Action("s3:PutObject"),
            Self::WriteGetObjectResponse => Required::Unsupported,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_names_itself_and_needs_an_action_of_the_catalog() {
        assert_eq!(S3Operation::ALL.len(), 99);
        for &op in S3Operation::ALL {
            assert_eq!(S3Operation::from_name(op.name()), Some(op));
            for version in [false, true] {
                if let Some(a) = op.required(version).action() {
                    assert!(crate::iam::actions::S3.contains(&a), "{op:?} -> {a}");
                }
            }
        }
        assert_eq!(S3Operation::from_name("GetObjectTorrentV9"), None);
        assert_eq!(
            S3Operation::GetObject.required(true),
            Required::Action("s3:GetObjectVersion")
        );
        assert_eq!(
            S3Operation::DeleteObjects.required(false),
            Required::PerObject("s3:DeleteObject")
        );
        assert_eq!(
            S3Operation::CreateSession.required(false),
            Required::Unsupported
        );
    }
}
