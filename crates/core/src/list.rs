//! Listing with prefix, delimiter and markers, as ListObjects (v1) and ListObjectsV2 define
//! it. The metadata store only returns keys in byte order; rolling keys up into common
//! prefixes and skipping past a whole prefix in one query happen here, so every store
//! behaves the same.

use vallum_types::limits::{LIST_BATCH_ROWS, MAX_LIST_KEYS};

use crate::error::{Error, Result};
use crate::meta::{ListStart, ObjectSummary, VersionStart, VersionSummary};
use crate::service::ObjectService;
use crate::versioning::is_valid_version_id;

/// Rows read first after a common prefix was skipped.
const FIRST_DELIMITED_BATCH: usize = 16;

/// Where a listing resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// After this key.
    Key(String),
    /// After every key under this common prefix.
    Prefix(String),
}

impl Marker {
    /// Interprets a client-supplied marker / start-after. A marker that is itself a common
    /// prefix of this listing skips the whole prefix, so clients that page with `NextMarker`
    /// never see the same prefix twice.
    #[must_use]
    pub fn from_client(marker: &str, prefix: &str, delimiter: Option<&str>) -> Self {
        if let Some(d) = delimiter
            && let Some(rest) = marker.strip_prefix(prefix)
            && let Some(pos) = rest.find(d)
            && pos + d.len() == rest.len()
        {
            return Marker::Prefix(marker.to_owned());
        }
        Marker::Key(marker.to_owned())
    }

    /// The key or prefix text.
    #[must_use]
    pub fn text(&self) -> &str {
        match self {
            Marker::Key(k) | Marker::Prefix(k) => k,
        }
    }

    /// Opaque continuation token.
    #[must_use]
    pub fn to_token(&self) -> String {
        let tagged = match self {
            Marker::Key(k) => format!("k{k}"),
            Marker::Prefix(p) => format!("p{p}"),
        };
        crate::digest::base64(tagged.as_bytes())
    }

    /// Parses a continuation token made by [`Marker::to_token`].
    pub fn from_token(token: &str) -> Result<Self> {
        let invalid =
            || Error::InvalidArgument("The continuation token provided is incorrect".into());
        let raw = crate::digest::unbase64(token).ok_or_else(invalid)?;
        let text = String::from_utf8(raw).map_err(|_| invalid())?;
        match text.split_at_checked(1) {
            Some(("k", k)) => Ok(Marker::Key(k.to_owned())),
            Some(("p", p)) => Ok(Marker::Prefix(p.to_owned())),
            _ => Err(invalid()),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Objects, in key order.
    pub objects: Vec<ObjectSummary>,
    /// Common prefixes, in order.
    pub common_prefixes: Vec<String>,
    /// More entries follow.
    pub truncated: bool,
    /// Where the next page starts, when truncated.
    pub next: Option<Marker>,
}

/// The smallest string greater than every string starting with `prefix`, if it is valid UTF-8.
#[must_use]
pub fn prefix_successor(prefix: &str) -> Option<String> {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            return String::from_utf8(bytes).ok();
        }
    }
    None
}

enum Cursor {
    Beginning,
    After(String),
    AtOrAfter(String),
}

impl Cursor {
    fn as_start(&self) -> ListStart<'_> {
        match self {
            Cursor::Beginning => ListStart::Beginning,
            Cursor::After(k) => ListStart::After(k),
            Cursor::AtOrAfter(k) => ListStart::AtOrAfter(k),
        }
    }

    /// Positions the cursor past every key under `prefix`; returns the prefix to skip by
    /// filtering when no successor string exists.
    fn skip_prefix(prefix: &str) -> (Cursor, Option<String>) {
        match prefix_successor(prefix) {
            Some(next) => (Cursor::AtOrAfter(next), None),
            None => (Cursor::After(prefix.to_owned()), Some(prefix.to_owned())),
        }
    }
}

impl ObjectService {
    /// Lists `bucket` from `start`, returning at most `max_keys` entries (objects plus common
    /// prefixes; capped at 1000).
    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        start: Option<Marker>,
        max_keys: usize,
    ) -> Result<ListPage> {
        self.bucket(bucket).await?;
        let max_keys = max_keys.min(MAX_LIST_KEYS);
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let mut page = ListPage::default();
        if max_keys == 0 {
            return Ok(page);
        }
        let (mut cursor, mut skipping) = match start {
            None => (Cursor::Beginning, None),
            Some(Marker::Key(k)) => (Cursor::After(k), None),
            Some(Marker::Prefix(p)) => Cursor::skip_prefix(&p),
        };
        let mut count = 0usize;
        // Rows to ask for: without a delimiter, what the page still needs (plus one to learn
        // whether it is truncated); with one, few at first and doubling, because a common
        // prefix may swallow most rows and a re-query skips past it.
        let mut batch_rows = if delimiter.is_some() {
            FIRST_DELIMITED_BATCH
        } else {
            (max_keys + 1).min(LIST_BATCH_ROWS)
        };
        'batches: loop {
            let batch = self
                .meta
                .list_objects(bucket, prefix, cursor.as_start(), batch_rows)
                .await?;
            let full_batch = batch.len() == batch_rows;
            if delimiter.is_some() {
                batch_rows = (batch_rows * 2).min(LIST_BATCH_ROWS);
            } else {
                batch_rows = (max_keys + 1 - count.min(max_keys)).clamp(1, LIST_BATCH_ROWS);
            }
            if batch.is_empty() {
                break;
            }
            for object in batch {
                cursor = Cursor::After(object.key.clone());
                if let Some(skip) = &skipping {
                    if object.key.starts_with(skip.as_str()) {
                        continue;
                    }
                    skipping = None;
                }
                if count == max_keys {
                    page.truncated = true;
                    break 'batches;
                }
                count += 1;
                let rolled_up = delimiter.and_then(|d| {
                    let rest = object.key.get(prefix.len()..)?;
                    rest.find(d)
                        .map(|pos| object.key[..prefix.len() + pos + d.len()].to_owned())
                });
                match rolled_up {
                    Some(common) => {
                        let (next_cursor, next_skip) = Cursor::skip_prefix(&common);
                        page.next = Some(Marker::Prefix(common.clone()));
                        page.common_prefixes.push(common);
                        cursor = next_cursor;
                        skipping = next_skip;
                        if skipping.is_none() {
                            batch_rows = FIRST_DELIMITED_BATCH;
                            // Re-query from past the prefix instead of reading its keys.
                            continue 'batches;
                        }
                    }
                    None => {
                        page.next = Some(Marker::Key(object.key.clone()));
                        page.objects.push(object);
                    }
                }
            }
            if !full_batch {
                break;
            }
        }
        if !page.truncated {
            page.next = None;
        }
        Ok(page)
    }
}

/// One page of ListObjectVersions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionsPage {
    /// Versions and delete markers, by key then newest first.
    pub versions: Vec<VersionSummary>,
    /// Common prefixes, in order.
    pub common_prefixes: Vec<String>,
    /// More entries follow.
    pub truncated: bool,
    /// `NextKeyMarker` when truncated.
    pub next_key_marker: Option<String>,
    /// `NextVersionIdMarker` when truncated after a version (not after a common prefix).
    pub next_version_id_marker: Option<String>,
}

enum VersionCursor {
    Beginning,
    AfterKey(String),
    AtOrAfterKey(String),
    AfterVersion(String, i64),
}

impl VersionCursor {
    fn as_start(&self) -> VersionStart<'_> {
        match self {
            VersionCursor::Beginning => VersionStart::Beginning,
            VersionCursor::AfterKey(k) => VersionStart::AfterKey(k),
            VersionCursor::AtOrAfterKey(k) => VersionStart::AtOrAfterKey(k),
            VersionCursor::AfterVersion(k, s) => VersionStart::AfterVersion(k, *s),
        }
    }

    fn skip_prefix(prefix: &str) -> (Self, Option<String>) {
        match prefix_successor(prefix) {
            Some(next) => (VersionCursor::AtOrAfterKey(next), None),
            None => (
                VersionCursor::AfterKey(prefix.to_owned()),
                Some(prefix.to_owned()),
            ),
        }
    }
}

impl ObjectService {
    /// ListObjectVersions: versions and delete markers of `bucket` by key then newest first,
    /// from (`key_marker`, `version_id_marker`), at most `max_keys` entries (versions plus
    /// common prefixes; capped at 1000).
    pub async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        key_marker: Option<&str>,
        version_id_marker: Option<&str>,
        max_keys: usize,
    ) -> Result<VersionsPage> {
        self.bucket(bucket).await?;
        let max_keys = max_keys.min(MAX_LIST_KEYS);
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let key_marker = key_marker.filter(|k| !k.is_empty());
        let mut page = VersionsPage::default();
        let (mut cursor, mut skipping) = match (key_marker, version_id_marker) {
            (None, Some(_)) => {
                return Err(Error::InvalidArgument(
                    "A version-id marker cannot be specified without a key marker.".into(),
                ));
            }
            (None, None) => (VersionCursor::Beginning, None),
            (Some(k), Some(v)) if !v.is_empty() => {
                if !is_valid_version_id(v) {
                    return Err(Error::InvalidArgument(
                        "Invalid version id specified".into(),
                    ));
                }
                match self.meta.get_object(bucket, k, Some(v)).await? {
                    Some(found) => (VersionCursor::AfterVersion(k.to_owned(), found.seq), None),
                    None => (VersionCursor::AfterKey(k.to_owned()), None),
                }
            }
            (Some(k), _) => match Marker::from_client(k, prefix, delimiter) {
                Marker::Prefix(p) => VersionCursor::skip_prefix(&p),
                Marker::Key(k) => (VersionCursor::AfterKey(k), None),
            },
        };
        if max_keys == 0 {
            return Ok(page);
        }
        let mut count = 0usize;
        let mut batch_rows = if delimiter.is_some() {
            FIRST_DELIMITED_BATCH
        } else {
            (max_keys + 1).min(LIST_BATCH_ROWS)
        };
        'batches: loop {
            let after_version = matches!(cursor, VersionCursor::AfterVersion(..));
            let batch = self
                .meta
                .list_versions(bucket, prefix, cursor.as_start(), batch_rows)
                .await?;
            let full_batch = batch.len() == batch_rows;
            batch_rows = if delimiter.is_some() {
                (batch_rows * 2).min(LIST_BATCH_ROWS)
            } else {
                (max_keys + 1 - count.min(max_keys)).clamp(1, LIST_BATCH_ROWS)
            };
            if batch.is_empty() && !after_version {
                break;
            }
            if batch.is_empty() || (after_version && !full_batch) {
                // The rest of one key is done: continue with the keys after it.
                let key = match &cursor {
                    VersionCursor::AfterVersion(k, _) => k.clone(),
                    _ => unreachable!("checked above"),
                };
                for version in batch {
                    if !self.take_version(&mut page, &mut count, max_keys, version) {
                        break 'batches;
                    }
                }
                cursor = VersionCursor::AfterKey(key);
                continue;
            }
            for version in batch {
                cursor = VersionCursor::AfterVersion(version.key.clone(), version.seq);
                if let Some(skip) = &skipping {
                    if version.key.starts_with(skip.as_str()) {
                        continue;
                    }
                    skipping = None;
                }
                let rolled_up = delimiter.and_then(|d| {
                    let rest = version.key.get(prefix.len()..)?;
                    rest.find(d)
                        .map(|pos| version.key[..prefix.len() + pos + d.len()].to_owned())
                });
                if let Some(common) = rolled_up {
                    if count == max_keys {
                        page.truncated = true;
                        break 'batches;
                    }
                    count += 1;
                    let (next_cursor, next_skip) = VersionCursor::skip_prefix(&common);
                    page.next_key_marker = Some(common.clone());
                    page.next_version_id_marker = None;
                    page.common_prefixes.push(common);
                    cursor = next_cursor;
                    skipping = next_skip;
                    if skipping.is_none() {
                        batch_rows = FIRST_DELIMITED_BATCH;
                        continue 'batches;
                    }
                    continue;
                }
                if !self.take_version(&mut page, &mut count, max_keys, version) {
                    break 'batches;
                }
            }
            if !full_batch {
                break;
            }
        }
        if !page.truncated {
            page.next_key_marker = None;
            page.next_version_id_marker = None;
        }
        Ok(page)
    }

    /// Adds a version to the page; false (and the page marked truncated) when it is full.
    fn take_version(
        &self,
        page: &mut VersionsPage,
        count: &mut usize,
        max_keys: usize,
        version: VersionSummary,
    ) -> bool {
        if *count == max_keys {
            page.truncated = true;
            return false;
        }
        *count += 1;
        page.next_key_marker = Some(version.key.clone());
        page.next_version_id_marker = Some(version.version_id.clone());
        page.versions.push(version);
        true
    }
}

/// The next `limit` versions of `bucket` after position `after` (a key and the seq of its
/// version last seen; `None`: from the beginning), by key then newest first, crossing key
/// boundaries. For whole-bucket scans (lifecycle, migration, verification).
pub async fn versions_after(
    meta: &dyn crate::meta::MetaStore,
    bucket: &str,
    after: Option<(&str, i64)>,
    limit: usize,
) -> crate::meta::MetaResult<Vec<VersionSummary>> {
    let Some((key, seq)) = after else {
        return meta
            .list_versions(bucket, "", VersionStart::Beginning, limit)
            .await;
    };
    let mut page = meta
        .list_versions(bucket, "", VersionStart::AfterVersion(key, seq), limit)
        .await?;
    if page.len() < limit {
        let more = meta
            .list_versions(bucket, "", VersionStart::AfterKey(key), limit - page.len())
            .await?;
        page.extend(more);
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_and_markers() {
        assert_eq!(prefix_successor("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_successor("").as_deref(), None);
        assert_eq!(
            Marker::from_client("photos/2024/", "photos/", Some("/")),
            Marker::Prefix("photos/2024/".into())
        );
        assert_eq!(
            Marker::from_client("photos/2024/a.jpg", "photos/", Some("/")),
            Marker::Key("photos/2024/a.jpg".into())
        );
        assert_eq!(
            Marker::from_client("x/", "", None),
            Marker::Key("x/".into())
        );
        for m in [Marker::Key("a b/é".into()), Marker::Prefix("p/".into())] {
            assert_eq!(Marker::from_token(&m.to_token()).unwrap(), m);
        }
        assert!(Marker::from_token("not base64!").is_err());
        assert!(Marker::from_token(&crate::digest::base64(b"zkey")).is_err());
    }
}
