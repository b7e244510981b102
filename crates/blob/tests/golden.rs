//! Golden files for the local site layout: sites written by layout versions 1 and 2 (committed
//! under tests/golden/site-v1 and site-v2) must keep opening and reading. The pack in site-v2
//! was written by a Python script from the format as docs/formats/on-disk.md states it, not by
//! this code.

use std::path::Path;
use std::str::FromStr;

use futures::StreamExt;
use vallum_blob::{
    LAYOUT_VERSION, LocalBlobStore, PACK_FORMAT_VERSION, encode_blob_record, encode_pack_header,
    encode_tombstone,
};
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

fn golden(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

async fn read(store: &LocalBlobStore, id: BlobId, range: std::ops::Range<u64>) -> Vec<u8> {
    let mut s = store.get(id, range).await.unwrap();
    let mut got = Vec::new();
    while let Some(c) = s.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    got
}

#[tokio::test]
async fn site_written_by_layout_v1_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&golden("site-v1"), dir.path());
    let store = LocalBlobStore::open(dir.path()).unwrap();
    let id = BlobId::from_str("0123456789abcdef0123456789abcdef").unwrap();
    assert_eq!(store.size(id).await.unwrap(), 11);
    let mut s = store.get(id, 6..11).await.unwrap();
    let mut got = Vec::new();
    while let Some(c) = s.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(got, b"world");
    // Opening upgraded it to the current layout.
    assert_eq!(
        std::fs::read(dir.path().join("layout")).unwrap(),
        std::fs::read(golden("site-v2").join("layout")).unwrap()
    );
}

#[tokio::test]
async fn site_written_by_layout_v2_with_a_pack_still_reads() {
    assert_eq!(
        (LAYOUT_VERSION, PACK_FORMAT_VERSION),
        (2, 1),
        "a new layout or pack version needs a new golden site"
    );
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&golden("site-v2"), dir.path());
    let store = LocalBlobStore::open(dir.path()).unwrap();
    let file = BlobId::from_str("0123456789abcdef0123456789abcdef").unwrap();
    assert_eq!(read(&store, file, 0..11).await, b"hello world");
    let packed = BlobId::from_str("00112233445566778899aabbccddeeff").unwrap();
    assert_eq!(store.size(packed).await.unwrap(), 12);
    assert_eq!(read(&store, packed, 0..12).await, b"packed hello");
    assert_eq!(read(&store, packed, 7..12).await, b"hello");
    // The second packed blob has a tombstone after it.
    let deleted = BlobId::from_str("ffeeddccbbaa99887766554433221100").unwrap();
    assert!(store.size(deleted).await.is_err());
    let mut ids = store.blob_ids().unwrap();
    ids.sort();
    assert_eq!(ids, vec![packed, file]);
    // A fresh site writes exactly the committed layout marker.
    let fresh = tempfile::tempdir().unwrap();
    LocalBlobStore::open(fresh.path()).unwrap();
    assert_eq!(
        std::fs::read(fresh.path().join("layout")).unwrap(),
        std::fs::read(dir.path().join("layout")).unwrap()
    );
}

#[test]
fn the_encoder_writes_the_golden_pack() {
    let pack_id = 0x0123_4567_89ab_cdef;
    let mut bytes = encode_pack_header(pack_id, 1_700_000_000_000).to_vec();
    let packed = BlobId::from_str("00112233445566778899aabbccddeeff").unwrap();
    let deleted = BlobId::from_str("ffeeddccbbaa99887766554433221100").unwrap();
    encode_blob_record(
        &mut bytes,
        packed,
        1_700_000_000_001,
        &[bytes::Bytes::from_static(b"packed hello")],
    );
    encode_blob_record(
        &mut bytes,
        deleted,
        1_700_000_000_002,
        &[
            bytes::Bytes::from_static(b"go"),
            bytes::Bytes::from_static(b"ne"),
        ],
    );
    encode_tombstone(&mut bytes, deleted, pack_id);
    assert_eq!(
        bytes,
        std::fs::read(golden("site-v2/packs/0123456789abcdef.pack")).unwrap()
    );
}

#[tokio::test]
async fn a_pack_index_of_version_1_is_rebuilt_as_the_golden_version_2() {
    // Both index files were written by tests/golden/pack-index/make.py from the format as
    // docs/formats/on-disk.md states it.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&golden("site-v2"), dir.path());
    let idx = dir.path().join("packs/0123456789abcdef.idx");
    std::fs::copy(golden("pack-index/v1.idx"), &idx).unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    assert_eq!(
        std::fs::read(&idx).unwrap(),
        std::fs::read(golden("pack-index/v2.idx")).unwrap()
    );
    // Read through the new index: the packed blob, and not the deleted one.
    let packed = BlobId::from_str("00112233445566778899aabbccddeeff").unwrap();
    assert_eq!(read(&store, packed, 0..12).await, b"packed hello");
    let deleted = BlobId::from_str("ffeeddccbbaa99887766554433221100").unwrap();
    assert!(store.size(deleted).await.is_err());
    drop(store);
    // A site with the version 2 file opens from it as it is.
    let store = LocalBlobStore::open(dir.path()).unwrap();
    assert_eq!(read(&store, packed, 7..12).await, b"hello");
    assert_eq!(store.pack_stats().blobs, 1);
}
