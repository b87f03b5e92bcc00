//! The cost of checking an API key, the work every `/v1` request does before
//! anything else: format and checksum, SHA-256 of the secret, a look-up in
//! the in-memory key cache, the key's state. No disk I/O is involved (the
//! cache is filled when the store opens and refreshed by every key change).
//!
//! `cargo bench --bench key_check`; the target is under 5 µs per check.

use packd::domain::key::Role;
use packd::store::{NewKey, Store};

fn main() {
    divan::main();
}

/// A store in memory with one active key, and that key's secret.
fn store_with_key() -> (Store, String) {
    let store = Store::in_memory().expect("in-memory store");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (_, secret) = rt
        .block_on(store.create_key(NewKey {
            name: "bench".into(),
            role: Role::Read,
            expires_at: None,
            rate_limit: None,
        }))
        .expect("create key");
    (store, secret)
}

/// The common case: a valid key.
#[divan::bench]
fn valid_key(bencher: divan::Bencher) {
    let (store, secret) = store_with_key();
    bencher.bench_local(|| store.authenticate(divan::black_box(&secret)).is_ok());
}

/// A well-formed key that is not in the cache (the hash is still computed).
#[divan::bench]
fn unknown_key(bencher: divan::Bencher) {
    let (store, secret) = store_with_key();
    let (other_store, other) = store_with_key();
    other_store.close();
    assert_ne!(secret, other);
    bencher.bench_local(|| store.authenticate(divan::black_box(&other)).is_err());
}

/// A malformed key: refused by the checksum, before any hashing.
#[divan::bench]
fn malformed_key(bencher: divan::Bencher) {
    let (store, _) = store_with_key();
    let bad = "packd_this-is-not-a-valid-key-at-all-000000000000000000";
    bencher.bench_local(|| store.authenticate(divan::black_box(bad)).is_err());
}
