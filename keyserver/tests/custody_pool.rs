#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The RSA key pool: each key once, refilled, pairwise-checked, durable.

mod custody_support;

use std::collections::HashSet;
use std::time::Duration;

use custody_support::*;
use keyserver::keystore::pairwise;
use keyserver::keystore::pool::PoolConfig;
use keyserver::keystore::Unlocked;
use keyserver::ports::RsaKeySource;
use rsa::traits::PublicKeyParts;

/// A guard against a refill that never happens; not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(600);

fn modulus(k: &rsa::RsaPrivateKey) -> Vec<u8> {
    k.n().to_bytes_be()
}

#[test]
fn the_pool_hands_out_each_key_once_and_refills() {
    let dir = tempfile::tempdir().unwrap();
    let (data, components) = init_in_memory(dir.path(), 2);
    let mut seen = HashSet::new();
    {
        let u = Unlocked::from_components(&data, &components).unwrap();
        let pool = u.key_pool(PoolConfig { target: 3 }).unwrap();
        assert!(pool.wait_until_ready(3, PATIENCE), "the pool filled");
        for _ in 0..3 {
            let k = pool.take().unwrap().unwrap();
            pairwise::check_rsa(&k).unwrap();
            assert_eq!(k.size(), 256);
            assert!(seen.insert(modulus(&k)), "a key came out twice");
        }
        // The refill thread brings it back to its target.
        assert!(pool.wait_until_ready(3, PATIENCE), "the pool refilled");
        let k = pool.rsa2048().unwrap();
        assert!(seen.insert(modulus(&k)));
        let stats = pool.stats();
        assert!(
            stats.generated >= 6 && stats.taken == 4 && stats.on_demand == 0,
            "{stats:?}"
        );
        assert!(pool.wait_until_ready(3, PATIENCE));
    }
    // After a restart the pool holds what was left: none of the keys taken.
    let u = Unlocked::from_components(&data, &components).unwrap();
    let pool = u.key_pool(PoolConfig { target: 0 }).unwrap();
    assert!(pool.len() >= 3, "{}", pool.len());
    while let Some(k) = pool.take().unwrap() {
        assert!(
            seen.insert(modulus(&k)),
            "a key taken before the restart came out again"
        );
    }
    assert!(pool.is_empty());

    // Empty: generated on the spot.
    let k = pool.rsa2048().unwrap();
    pairwise::check_rsa(&k).unwrap();
    assert!(seen.insert(modulus(&k)));
    assert_eq!(pool.stats().on_demand, 1);
    drop(pool);
    drop(u);

    let audit = std::fs::read_to_string(data.join("audit/audit.jsonl")).unwrap();
    assert!(
        audit.contains("\"action\":\"pool.refill\""),
        "refills are audited"
    );
    assert!(
        audit.contains("the key pool was empty"),
        "on-demand generation is audited"
    );
}

#[test]
fn concurrent_takers_never_share_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_data, u) = unlocked(dir.path());
    let pool = u.key_pool(PoolConfig { target: 0 }).unwrap();
    pool.fill(8).unwrap();
    let moduli: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    while let Some(k) = pool.take().unwrap() {
                        mine.push(modulus(&k));
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(moduli.len(), 8);
    assert_eq!(moduli.iter().collect::<HashSet<_>>().len(), 8);
}
