//! The PKCS#11 provider against a real SoftHSM2 token: the provider conformance suite, and the
//! key-encryption keys are really inside the token (sensitive, not extractable). The test
//! script installs SoftHSM2 and points `SOFTHSM2_CONF` at a token directory of its own; each
//! test initialises a fresh token there with `softhsm2-util`.

use std::path::PathBuf;
use std::process::Command;

use vallum_crypto::pkcs11::Pkcs11Provider;

const PIN: &str = "1234-vallum";

fn module() -> PathBuf {
    let candidates = [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("SoftHSM2 is not installed; run ./scripts/test.sh, which installs it")
}

/// A fresh token with a unique label, in the token directory `SOFTHSM2_CONF` names.
fn fresh_token() -> String {
    std::env::var("SOFTHSM2_CONF")
        .expect("SOFTHSM2_CONF is not set; run ./scripts/test.sh, which prepares a SoftHSM2 token directory");
    let label = format!("vallum-{}", std::process::id() % 100_000 + rand_suffix());
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            &label,
            "--pin",
            PIN,
            "--so-pin",
            "5678-vallum",
        ])
        .output()
        .expect("softhsm2-util runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    label
}

fn rand_suffix() -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap();
    u32::from_le_bytes(b) % 1_000_000
}

/// One test: a PKCS#11 library is process-global, and finalising it (which dropping a context
/// does) under another test's session would pull the token away from it.
#[tokio::test]
async fn softhsm_token_passes_the_conformance_suite_and_keeps_its_keys() {
    let label = fresh_token();
    let p = Pkcs11Provider::open(&module(), &label, PIN).unwrap();
    vallum_crypto::conformance::run(&p).await;
    // A wrong PIN or an unknown token is a clear error, not a panic.
    assert!(Pkcs11Provider::open(&module(), &label, "wrong-pin").is_err());
    assert!(Pkcs11Provider::open(&module(), "no-such-token", PIN).is_err());
    key_cannot_leave_the_token(&label, p).await;
}

async fn key_cannot_leave_the_token(label: &str, p: Pkcs11Provider) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::object::{Attribute, AttributeType, ObjectClass};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    use vallum_crypto::keys::KeyProvider;

    p.create_key("inside", 1).await.unwrap();
    // Look at the key object from a separate session, as any other token client could.
    // Never dropped: dropping would finalise the library under the provider.
    let ctx: &'static Pkcs11 = Box::leak(Box::new(Pkcs11::new(module()).unwrap()));
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let _keep = p;
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == label)
        .unwrap();
    let s = ctx.open_ro_session(slot).unwrap();
    let _ = s.login(UserType::User, Some(&AuthPin::new(PIN.into())));
    let keys = s
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"inside#v1".to_vec()),
        ])
        .unwrap();
    assert_eq!(keys.len(), 1);
    let attrs = s
        .get_attributes(
            keys[0],
            &[AttributeType::Sensitive, AttributeType::Extractable],
        )
        .unwrap();
    assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
    let value = s.get_attributes(keys[0], &[AttributeType::Value]);
    assert!(
        !matches!(value, Ok(ref v) if v.iter().any(|a| matches!(a, Attribute::Value(_)))),
        "the key value was readable: {value:?}"
    );
}
