//! The behaviour every [`KeyProvider`] must show; each provider's tests run [`run`].

use crate::CryptoError;
use crate::keys::{DataKey, Justification, KeyProvider, KeyState};

fn why() -> Justification {
    Justification {
        actor: "key:CONFORMANCE".into(),
        reason: "customer-request".into(),
    }
}

/// Runs the suite against `p` (which must hold no key named `conf-*`).
pub async fn run(p: &dyn KeyProvider) {
    let ctx = b"records\0a/b\0blob-1".as_slice();
    let info = p.create_key("conf-a", 1000).await.unwrap();
    assert_eq!((info.current_version, info.state), (1, KeyState::Enabled));
    assert!(matches!(
        p.create_key("conf-a", 1).await,
        Err(CryptoError::KeyExists(_))
    ));
    assert!(p.create_key("bad id with spaces", 1).await.is_err());
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

    // Rotation: new wraps use the new version, old wrapped keys still open.
    let rotated = p.rotate("conf-a", 2000).await.unwrap();
    assert_eq!(rotated.current_version, 2);
    let w2 = p.wrap("conf-a", &dek, ctx, &why()).await.unwrap();
    assert_eq!(w2.key_version, 2);
    assert_eq!(
        p.unwrap(&w, ctx, &why()).await.unwrap().expose(),
        dek.expose()
    );
    assert_eq!(
        p.unwrap(&w2, ctx, &why()).await.unwrap().expose(),
        dek.expose()
    );

    // Disabled: refused with a clear error, then usable again.
    p.set_state("conf-a", KeyState::Disabled).await.unwrap();
    assert!(matches!(
        p.unwrap(&w, ctx, &why()).await,
        Err(CryptoError::KeyUnavailable {
            state: KeyState::Disabled,
            ..
        })
    ));
    assert!(p.wrap("conf-a", &dek, ctx, &why()).await.is_err());
    p.set_state("conf-a", KeyState::Enabled).await.unwrap();
    assert!(p.unwrap(&w, ctx, &why()).await.is_ok());
    p.set_state(
        "conf-a",
        KeyState::PendingDeletion {
            delete_at_ms: 9_999,
        },
    )
    .await
    .unwrap();
    assert!(p.unwrap(&w, ctx, &why()).await.is_err());
    p.set_state("conf-a", KeyState::Enabled).await.unwrap();

    // Crypto-shredding: after destroy nothing opens, for good.
    let info = p.destroy("conf-a").await.unwrap();
    assert_eq!(info.state, KeyState::Destroyed);
    assert!(p.unwrap(&w, ctx, &why()).await.is_err());
    assert!(p.unwrap(&w2, ctx, &why()).await.is_err());
    assert!(p.set_state("conf-a", KeyState::Enabled).await.is_err());
    assert!(
        p.list()
            .await
            .unwrap()
            .iter()
            .any(|k| k.key_id == "conf-a" && k.state == KeyState::Destroyed)
    );
}
