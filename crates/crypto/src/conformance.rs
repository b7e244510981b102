//! The behaviour every [`KeyProvider`] must show; each provider's tests run [`run`].

use crate::CryptoError;
use crate::keys::{DataKey, Justification, KeyProvider, KeyState};

fn why() -> Justification {
    Justification {
        actor: "key:CONFORMANCE".into(),
        reason: "customer-request".into(),
        approvals: None,
    }
}

/// Runs the suite against `p` (which must hold no key named `conf-*`).
pub async fn run(p: &dyn KeyProvider) {
    run_with(p, p).await;
}

/// Runs the suite against `p`, with key lifecycle (create, rotate, state changes, destroy,
/// list) done through `admin`: for an external key store that is the store's own tooling,
/// since the XKS API carries no lifecycle operations. A wrapped key whose `key_version` is 0
/// keeps its version inside the provider's ciphertext.
pub async fn run_with(p: &dyn KeyProvider, admin: &dyn KeyProvider) {
    // The provider as it is used: behind the justification check.
    let p = &crate::justified::Justified::new(p);
    let ctx = b"records\0a/b\0blob-1".as_slice();
    let info = admin.create_key("conf-a", 1000).await.unwrap();
    assert_eq!((info.current_version, info.state), (1, KeyState::Enabled));
    assert!(matches!(
        admin.create_key("conf-a", 1).await,
        Err(CryptoError::KeyExists(_))
    ));
    assert!(admin.create_key("bad id with spaces", 1).await.is_err());
    assert!(matches!(
        p.describe("conf-none").await,
        Err(CryptoError::NoSuchKey(_))
    ));

    // Wrap/unwrap round trip; the wrapped form is not the key and depends on the context.
    let dek = DataKey::generate().unwrap();
    let w = p.wrap("conf-a", &dek, ctx, &why()).await.unwrap();
    assert_eq!(w.provider, p.name());
    assert!(
        !w.wrapped
            .contains(&base64_simd::STANDARD.encode_to_string(dek.expose()))
    );
    assert_eq!(
        p.unwrap(&w, ctx, &why()).await.unwrap().expose(),
        dek.expose()
    );
    assert!(p.unwrap(&w, b"other context", &why()).await.is_err());
    // Platform staff without a lockbox grant are refused (with one, the provider's own
    // rules decide: an external key store may refuse operators altogether).
    let operator = Justification {
        actor: "operator:olga key:VACONF".into(),
        reason: "customer-request".into(),
        approvals: None,
    };
    assert!(matches!(
        p.unwrap(&w, ctx, &operator).await,
        Err(CryptoError::Refused(_))
    ));

    // One character of the wrapped form changed (the tenth letter or digit from the end, so
    // inside the key material whatever the provider's encoding).
    let mut tampered = w.clone();
    let mut chars: Vec<char> = tampered.wrapped.chars().collect();
    let at = chars
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, c)| c.is_ascii_alphanumeric())
        .nth(9)
        .map(|(i, _)| i)
        .unwrap();
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    tampered.wrapped = chars.into_iter().collect();
    assert!(p.unwrap(&tampered, ctx, &why()).await.is_err());

    // Raw sealing (what `vallum keyd` needs), where the provider offers it.
    match p.seal("conf-a", b"raw bytes", b"aad", &why()).await {
        Ok(sealed) => {
            assert_ne!(sealed.ciphertext[..9], b"raw bytes"[..]);
            let plain = p.open("conf-a", &sealed, b"aad", &why()).await.unwrap();
            assert_eq!(plain.as_slice(), b"raw bytes");
            assert!(p.open("conf-a", &sealed, b"other", &why()).await.is_err());
            let mut flipped = sealed.clone();
            flipped.ciphertext[0] ^= 1;
            assert!(matches!(
                p.open("conf-a", &flipped, b"aad", &why()).await,
                Err(CryptoError::Integrity(_))
            ));
        }
        Err(CryptoError::Unsupported(_)) => {}
        Err(e) => panic!("seal failed: {e}"),
    }

    // Rotation: new wraps use the new version, old wrapped keys still open.
    let rotated = admin.rotate("conf-a", 2000).await.unwrap();
    assert_eq!(rotated.current_version, 2);
    let w2 = p.wrap("conf-a", &dek, ctx, &why()).await.unwrap();
    if w.key_version != 0 {
        assert_eq!((w.key_version, w2.key_version), (1, 2));
    }
    assert_eq!(
        p.unwrap(&w, ctx, &why()).await.unwrap().expose(),
        dek.expose()
    );
    assert_eq!(
        p.unwrap(&w2, ctx, &why()).await.unwrap().expose(),
        dek.expose()
    );

    // Disabled: refused with a clear error, then usable again.
    admin.set_state("conf-a", KeyState::Disabled).await.unwrap();
    assert!(matches!(
        p.unwrap(&w, ctx, &why()).await,
        Err(CryptoError::KeyUnavailable {
            state: KeyState::Disabled,
            ..
        })
    ));
    assert!(p.wrap("conf-a", &dek, ctx, &why()).await.is_err());
    admin.set_state("conf-a", KeyState::Enabled).await.unwrap();
    assert!(p.unwrap(&w, ctx, &why()).await.is_ok());
    admin
        .set_state(
            "conf-a",
            KeyState::PendingDeletion {
                delete_at_ms: 9_999,
            },
        )
        .await
        .unwrap();
    assert!(p.unwrap(&w, ctx, &why()).await.is_err());
    admin.set_state("conf-a", KeyState::Enabled).await.unwrap();

    // Crypto-shredding: after destroy nothing opens, for good.
    let info = admin.destroy("conf-a").await.unwrap();
    assert_eq!(info.state, KeyState::Destroyed);
    assert!(p.unwrap(&w, ctx, &why()).await.is_err());
    assert!(p.unwrap(&w2, ctx, &why()).await.is_err());
    assert!(admin.set_state("conf-a", KeyState::Enabled).await.is_err());
    assert!(
        admin
            .list()
            .await
            .unwrap()
            .iter()
            .any(|k| k.key_id == "conf-a" && k.state == KeyState::Destroyed)
    );
}
