//! The RSA key pool: RSA-2048 keys generated ahead of time (generation
//! takes 50–500 ms a key, far longer than issuing a card), each
//! pairwise-checked, wrapped with AES-256-GCM under `rsa-pool-key` (itself
//! under the root KEK) and kept in the sled tree `rsa-pool`.
//!
//! - [`KeyPool::take`] removes the oldest key atomically (`pop_min`) and
//!   makes the removal durable (sled's flush, then fsync of its files)
//!   before the key is returned: a key
//!   is handed out at most once, even across a crash.
//! - A background thread refills the pool to its target whenever it falls
//!   below; each refill round is audited (`pool.refill`).
//! - [`RsaKeySource::rsa2048`] takes from the pool, or generates a key on
//!   the spot when the pool is empty (audited as `key.generate`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::RsaPrivateKey;
use vsc::secret::AesKey;

use super::{aead, pairwise, KeystoreError};
use crate::ports::{AuditEvent, AuditOutcome, AuditSink, KeyError, RsaKeySource};

/// How the pool is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// The number of keys the refill keeps ready (0: no refill thread).
    pub target: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { target: 64 }
    }
}

/// Counters of a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Keys ready now.
    pub ready: usize,
    /// Keys generated into the pool since start.
    pub generated: u64,
    /// Keys taken from the pool since start.
    pub taken: u64,
    /// Keys generated on the spot because the pool was empty.
    pub on_demand: u64,
}

struct Shared {
    tree: sled::Tree,
    /// The database's directory, fsynced after each change.
    db_dir: PathBuf,
    key: AesKey,
    audit: Arc<dyn AuditSink>,
    target: usize,
    count: AtomicUsize,
    stop: AtomicBool,
    wake: Mutex<bool>,
    signal: Condvar,
    generated: AtomicU64,
    taken: AtomicU64,
    on_demand: AtomicU64,
}

/// The pool. Dropping it stops the refill thread (after the key it is
/// generating, if any).
pub struct KeyPool {
    shared: Arc<Shared>,
    refiller: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for KeyPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPool({:?})", self.stats())
    }
}

fn entry_name(id: u64) -> String {
    format!("rsa-pool/{id:016x}")
}

fn store_err(e: sled::Error) -> KeyError {
    KeyError::Store(format!("the RSA key pool: {e}"))
}

impl Shared {
    /// Makes the tree's last change durable: sled's flush, then fsync of
    /// its files.
    fn durable(&self) -> Result<(), KeyError> {
        self.tree.flush().map_err(store_err)?;
        super::fsio::sync_tree(&self.db_dir).map_err(|e| {
            KeyError::Store(format!(
                "the RSA key pool: fsync of {}: {e}",
                self.db_dir.display()
            ))
        })
    }
}

impl Shared {
    fn wake_refiller(&self) {
        if let Ok(mut w) = self.wake.lock() {
            *w = true;
        }
        self.signal.notify_all();
    }

    /// Generates one key and adds it to the pool durably.
    fn add_one(&self) -> Result<(), KeyError> {
        let key = pairwise::generate_rsa2048()?;
        let der = key
            .to_pkcs8_der()
            .map_err(|e| KeyError::Generation(format!("PKCS#8 encoding of an RSA key: {e}")))?;
        let mut id = match self.tree.last().map_err(store_err)? {
            Some((k, _)) => <[u8; 8]>::try_from(k.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0)
                .wrapping_add(1),
            None => 1,
        };
        loop {
            let wrapped = aead::wrap(&self.key, &entry_name(id), der.as_bytes())
                .map_err(|e| KeyError::Store(format!("wrapping a pooled key: {e}")))?;
            let swapped = self
                .tree
                .compare_and_swap(id.to_be_bytes(), None as Option<&[u8]>, Some(wrapped))
                .map_err(store_err)?;
            if swapped.is_ok() {
                break;
            }
            id = id.wrapping_add(1);
        }
        self.durable()?;
        self.count.fetch_add(1, Ordering::SeqCst);
        self.generated.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn take(&self) -> Result<Option<RsaPrivateKey>, KeyError> {
        loop {
            let Some((k, v)) = self.tree.pop_min().map_err(store_err)? else {
                return Ok(None);
            };
            // The removal is durable before the key is used.
            self.durable()?;
            let _ = self
                .count
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| Some(c.saturating_sub(1)));
            self.wake_refiller();
            let id = <[u8; 8]>::try_from(k.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let key = aead::unwrap(&self.key, &entry_name(id), &v)
                .map_err(|e| e.to_string())
                .and_then(|der| {
                    RsaPrivateKey::from_pkcs8_der(der.expose_secret()).map_err(|e| e.to_string())
                });
            match key {
                Ok(key) => {
                    self.taken.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(key));
                }
                Err(reason) => {
                    tracing::error!(entry = id, %reason, "a pooled RSA key did not unwrap; it was discarded");
                    let _ = self.audit.record(AuditEvent {
                        actor: "keyserver".into(),
                        action: "pool.discard".into(),
                        subject: entry_name(id),
                        outcome: AuditOutcome::Failed,
                        detail: format!("a pooled RSA key did not unwrap and was discarded: {reason}"),
                    });
                }
            }
        }
    }

    fn refill_loop(&self) {
        let mut round = 0u64;
        let mut started = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            if self.count.load(Ordering::SeqCst) < self.target {
                if round == 0 {
                    started = Instant::now();
                }
                match self.add_one() {
                    Ok(()) => round += 1,
                    Err(e) => {
                        tracing::error!(error = %e, "the RSA key pool could not add a key");
                        let _ = self.audit.record(AuditEvent {
                            actor: "keyserver".into(),
                            action: "pool.refill".into(),
                            subject: "rsa-pool".into(),
                            outcome: AuditOutcome::Failed,
                            detail: e.to_string(),
                        });
                        self.wait(Duration::from_secs(5));
                    }
                }
                continue;
            }
            self.audit_round(&mut round, started);
            self.wait(Duration::from_secs(1));
        }
        self.audit_round(&mut round, started);
    }

    fn audit_round(&self, round: &mut u64, started: Instant) {
        if *round == 0 {
            return;
        }
        let ready = self.count.load(Ordering::SeqCst);
        tracing::info!(generated = *round, ready, "RSA key pool refilled");
        let _ = self.audit.record(AuditEvent {
            actor: "keyserver".into(),
            action: "pool.refill".into(),
            subject: "rsa-pool".into(),
            outcome: AuditOutcome::Ok,
            detail: format!(
                "generated {} RSA-2048 keys (each pairwise-checked) in {:.1} s; {ready} ready, target {}",
                *round,
                started.elapsed().as_secs_f64(),
                self.target
            ),
        });
        *round = 0;
    }

    fn wait(&self, timeout: Duration) {
        if let Ok(mut woken) = self.wake.lock() {
            if !*woken && !self.stop.load(Ordering::SeqCst) {
                woken = match self.signal.wait_timeout(woken, timeout) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                };
            }
            *woken = false;
        }
    }
}

impl KeyPool {
    /// Opens the pool in `tree` (keys wrapped under `key`) and starts its
    /// refill thread.
    pub(crate) fn start(
        tree: sled::Tree,
        db_dir: PathBuf,
        key: AesKey,
        audit: Arc<dyn AuditSink>,
        config: PoolConfig,
    ) -> Result<Self, KeystoreError> {
        let shared = Arc::new(Shared {
            count: AtomicUsize::new(tree.len()),
            tree,
            db_dir,
            key,
            audit,
            target: config.target,
            stop: AtomicBool::new(false),
            wake: Mutex::new(false),
            signal: Condvar::new(),
            generated: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            on_demand: AtomicU64::new(0),
        });
        let refiller = if config.target > 0 {
            let s = shared.clone();
            Some(
                std::thread::Builder::new()
                    .name("rsa-pool refill".into())
                    .spawn(move || s.refill_loop())
                    .map_err(|source| KeystoreError::Io {
                        op: "starting the RSA key pool's refill thread for",
                        path: "rsa-pool".into(),
                        source,
                    })?,
            )
        } else {
            None
        };
        Ok(KeyPool { shared, refiller })
    }

    /// Takes one key out of the pool, or `None` when it is empty.
    pub fn take(&self) -> Result<Option<RsaPrivateKey>, KeyError> {
        self.shared.take()
    }

    /// Keys ready now.
    pub fn len(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The refill target.
    pub fn target(&self) -> usize {
        self.shared.target
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            ready: self.len(),
            generated: self.shared.generated.load(Ordering::Relaxed),
            taken: self.shared.taken.load(Ordering::Relaxed),
            on_demand: self.shared.on_demand.load(Ordering::Relaxed),
        }
    }

    /// Generates `n` keys into the pool on this thread (e.g. to fill it
    /// before a large job).
    pub fn fill(&self, n: usize) -> Result<(), KeyError> {
        for _ in 0..n {
            self.shared.add_one()?;
        }
        Ok(())
    }

    /// Waits until at least `n` keys are ready, or `limit` has passed;
    /// returns whether they are.
    pub fn wait_until_ready(&self, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.len() < n {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

impl RsaKeySource for KeyPool {
    fn rsa2048(&self) -> Result<RsaPrivateKey, KeyError> {
        if let Some(k) = self.take()? {
            return Ok(k);
        }
        let key = pairwise::generate_rsa2048()?;
        self.shared.on_demand.fetch_add(1, Ordering::Relaxed);
        let _ = self.shared.audit.record(AuditEvent {
            actor: "keyserver".into(),
            action: "key.generate".into(),
            subject: "rsa-2048".into(),
            outcome: AuditOutcome::Ok,
            detail: "RSA-2048 generated on the spot, pairwise-checked: the key pool was empty".into(),
        });
        Ok(key)
    }
}

impl Drop for KeyPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake_refiller();
        if let Some(t) = self.refiller.take() {
            let _ = t.join();
        }
    }
}
