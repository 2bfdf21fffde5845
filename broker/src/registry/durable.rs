//! Durable streams in the registry: creating one writes its definition and opens its log
//! under `storage.data_dir`; at start every durable stream found there is loaded (same epoch,
//! same offsets) before the broker serves; a maintenance tick applies retention; a clean
//! shutdown closes every log (final fsync, clean mark).

use std::sync::Arc;
use std::time::{Duration, Instant};

use felix_storage::flusher::Flushers;
use felix_storage::log::{DurableLog, LogConfig};
use parking_lot::Mutex;

use super::Registry;
use crate::datadir::{DataDir, StreamMeta};
use crate::error::BrokerError;
use crate::log::{Durability, DurableStreamLog, FsyncPolicy, Log};
use crate::stream::StreamConfig;
use felix_wire::ErrorCode;

/// The registry's handle on the data directory.
pub(crate) struct Storage {
    dir: DataDir,
    flushers: Arc<Flushers>,
    /// Serialises durable creations, so two creators of one stream never open its files twice.
    create: Mutex<()>,
    logs: Mutex<Vec<Arc<DurableLog>>>,
}

/// What loading the data directory found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// Durable streams loaded.
    pub streams: usize,
    /// Records they hold.
    pub records: u64,
    /// Logs whose tail was cut back (a torn write) or whose epoch changed.
    pub truncated: usize,
    /// Wall time spent.
    pub elapsed: Duration,
}

impl Registry {
    /// Opens `storage.data_dir` (lock, boot id) and loads every durable stream defined there.
    /// Without a data directory in the configuration this does nothing.
    pub fn open_storage(&mut self) -> Result<Option<Loaded>, String> {
        let Some(root) = self.cfg.storage.data_dir.clone() else {
            return Ok(None);
        };
        let started = Instant::now();
        let dir = DataDir::open(&root).map_err(|e| e.to_string())?;
        let flushers = Flushers::new(1).map_err(|e| format!("storage flusher thread: {e}"))?;
        let found = dir.list_streams().map_err(|e| e.to_string())?;
        let max = self.cfg.storage.max_durable_streams;
        if found.len() > max {
            return Err(format!(
                "storage.data_dir holds {} durable streams, more than storage.max_durable_streams ({max})",
                found.len()
            ));
        }
        self.storage = Some(Storage {
            dir,
            flushers,
            create: Mutex::new(()),
            logs: Mutex::new(Vec::new()),
        });
        let mut loaded = Loaded {
            streams: 0,
            records: 0,
            truncated: 0,
            elapsed: Duration::ZERO,
        };
        for (meta, path) in found {
            let where_ = path.display().to_string();
            let config = meta
                .stream_config()
                .map_err(|e| format!("{where_}/stream.meta: {e}"))?;
            let Durability::Durable(policy) = config.durability else {
                unreachable!("a definition on disk is durable")
            };
            let storage = self.storage.as_ref().expect("set above");
            let (log, recovery) = storage
                .open_log(
                    &self.cfg.storage,
                    &path,
                    &config,
                    policy,
                    meta.segment_bytes,
                )
                .map_err(|e| format!("{where_}: {e}"))?;
            if recovery.truncated_bytes > 0 || recovery.epoch_changed || recovery.damage.is_some() {
                loaded.truncated += 1;
                tracing::warn!(stream = %where_, ?recovery, "durable stream recovered with damage");
            }
            loaded.streams += 1;
            loaded.records += recovery.records;
            let boxed = Box::new(DurableStreamLog::new(
                log,
                policy,
                Some(self.memory.clone()),
            ));
            self.insert_stream_with(
                &meta.tenant,
                &meta.namespace,
                &meta.name,
                config,
                Some(boxed),
            )
            .map_err(|e| format!("{where_}: {}", e.message))?;
        }
        loaded.elapsed = started.elapsed();
        tracing::info!(
            streams = loaded.streams,
            records = loaded.records,
            truncated = loaded.truncated,
            ms = loaded.elapsed.as_millis() as u64,
            "durable streams loaded"
        );
        Ok(Some(loaded))
    }

    /// A new durable stream's log: its definition written, its directory created. Called
    /// with no registry lock held; durable creations are serialised among themselves.
    pub(super) fn create_durable_log(
        &self,
        tenant: &str,
        namespace: &str,
        name: &str,
        config: &StreamConfig,
        policy: FsyncPolicy,
    ) -> Result<(Box<dyn Log>, parking_lot::MutexGuard<'_, ()>), BrokerError> {
        let Some(storage) = &self.storage else {
            return Err(BrokerError::invalid(
                "durable streams need storage.data_dir (--data-dir)",
            ));
        };
        let guard = storage.create.lock();
        let segment_bytes = self
            .cfg
            .storage
            .segment_bytes_for(config.retention.max_bytes);
        let meta = StreamMeta::new(
            tenant,
            namespace,
            name,
            config,
            segment_bytes,
            crate::stream::unix_now_ms(),
        );
        let dir = storage
            .dir
            .write_meta(&meta)
            .map_err(|e| BrokerError::new(ErrorCode::Storage, e.to_string()))?;
        let (log, _) = storage
            .open_log(&self.cfg.storage, &dir, config, policy, segment_bytes)
            .map_err(|e| BrokerError::storage(&e))?;
        Ok((
            Box::new(DurableStreamLog::new(
                log,
                policy,
                Some(self.memory.clone()),
            )),
            guard,
        ))
    }

    /// Removes the files of a durable stream whose creation lost a race (never used).
    pub(super) fn forget_durable(&self, tenant: &str, namespace: &str, name: &str) {
        if let Some(s) = &self.storage {
            let dir = s.dir.stream_dir(tenant, namespace, name);
            s.logs.lock().retain(|l| Arc::strong_count(l) > 1);
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Applies retention to every durable log (deletes whole sealed segments). Blocking: run
    /// it off the runtime threads.
    pub fn durable_retention(&self, now_unix_ms: u64) {
        let Some(s) = &self.storage else { return };
        let logs: Vec<_> = s.logs.lock().clone();
        for log in logs {
            if let Err(e) = log.apply_retention(now_unix_ms) {
                tracing::warn!(error = %e, "retention of a durable log failed");
            }
        }
    }

    /// Whether the broker has a data directory.
    pub fn has_storage(&self) -> bool {
        self.storage.is_some()
    }

    /// Closes every durable log (final fsync, clean mark): a clean shutdown.
    pub fn close_durable(&self) {
        let Some(s) = &self.storage else { return };
        for log in s.logs.lock().iter() {
            if let Err(e) = log.close() {
                tracing::warn!(error = %e, "closing a durable log failed");
            }
        }
    }
}

impl Storage {
    fn open_log(
        &self,
        storage: &crate::config::StorageConfig,
        dir: &std::path::Path,
        config: &StreamConfig,
        policy: FsyncPolicy,
        segment_bytes: u64,
    ) -> Result<(Arc<DurableLog>, felix_storage::log::Recovery), felix_storage::StorageError> {
        let cfg = LogConfig {
            fsync: policy,
            segment_bytes,
            retention: felix_storage::retention::Retention {
                max_records: config.retention.max_records as u64,
                max_bytes: config.retention.max_bytes as u64,
                max_age: None,
            },
            machine_restarted: self.dir.machine_restarted(),
            hot_tail_bytes: storage.tail_cache_bytes,
            max_pending_bytes: storage.max_pending_bytes,
            ..LogConfig::default()
        };
        let (log, recovery) =
            DurableLog::open_with(self.dir.fs().clone(), dir, cfg, Some(self.flushers.clone()))?;
        let log = Arc::new(log);
        self.logs.lock().push(log.clone());
        Ok((log, recovery))
    }
}
