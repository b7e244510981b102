//! Golden files for the local site layout: a site written by layout version 1 (committed under
//! tests/golden/site-v1) must keep opening and reading.

use std::path::Path;
use std::str::FromStr;

use futures::StreamExt;
use vallum_blob::{LAYOUT_VERSION, LocalBlobStore};
use vallum_core::blob::BlobStore;
use vallum_types::BlobId;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn site_written_by_layout_v1_still_reads() {
    assert_eq!(
        LAYOUT_VERSION, 1,
        "a new layout version needs a new golden site"
    );
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/site-v1"),
        dir.path(),
    );
    let store = LocalBlobStore::open(dir.path()).unwrap();
    let id = BlobId::from_str("0123456789abcdef0123456789abcdef").unwrap();
    assert_eq!(store.size(id).await.unwrap(), 11);
    let mut s = store.get(id, 6..11).await.unwrap();
    let mut got = Vec::new();
    while let Some(c) = s.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(got, b"world");
    // A fresh site writes exactly the committed layout marker.
    let fresh = tempfile::tempdir().unwrap();
    LocalBlobStore::open(fresh.path()).unwrap();
    assert_eq!(
        std::fs::read(fresh.path().join("layout")).unwrap(),
        std::fs::read(dir.path().join("layout")).unwrap()
    );
}
