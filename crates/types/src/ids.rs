//! Opaque identifiers. Blob ids never contain bucket or object names, so a storage site
//! learns nothing from the names it stores.

use std::fmt;
use std::str::FromStr;

use crate::names::NameError;

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A fresh random identifier.
            #[must_use]
            pub fn random() -> Self {
                Self(uuid::Uuid::new_v4())
            }

            /// The identifier's 16 bytes (for binary formats).
            #[must_use]
            pub fn to_bytes(self) -> [u8; 16] {
                self.0.into_bytes()
            }

            /// The identifier whose [`to_bytes`](Self::to_bytes) are `bytes`.
            #[must_use]
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(uuid::Uuid::from_bytes(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0.simple())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.simple())
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                // Only the canonical 32-hex form is accepted: ids round-trip exactly.
                if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                    return Err(NameError::InvalidId(s.chars().take(64).collect()));
                }
                uuid::Uuid::parse_str(s).map(Self).map_err(|_| NameError::InvalidId(s.to_owned()))
            }
        }
    };
}

opaque_id!(
    /// Names one immutable blob of object data on a storage site.
    BlobId
);
opaque_id!(
    /// Names one multipart upload.
    UploadId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_other_forms() {
        let id = BlobId::random();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<BlobId>().unwrap(), id);
        assert!(text.to_uppercase().parse::<BlobId>().is_err());
        assert!("../etc/passwd".parse::<BlobId>().is_err());
        assert!(
            uuid::Uuid::new_v4()
                .hyphenated()
                .to_string()
                .parse::<UploadId>()
                .is_err()
        );
        assert_ne!(BlobId::random(), BlobId::random());
    }
}
