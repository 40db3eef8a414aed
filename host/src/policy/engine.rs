//! The Wasm engine policies run on: pooling allocator, epoch interruption with a ticker
//! thread, one linker (WASI that grants nothing, plus the `log` import), and a cache of
//! compiled components keyed by the file's sha256 so a swap back to a known version is
//! near-instant (compiling takes tens of milliseconds, a cache hit microseconds).

use super::loaded::{LoadError, Policy};
use super::sandbox::GuestState;
use super::world;
use crate::config::PolicyConfig;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// The epoch ticks every millisecond: `[policy] timeout_ms` is a number of ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Compiled components kept for swaps back and forth.
const CACHE_ENTRIES: usize = 8;

/// Per-component counts the pool has room for: enough for the interpreters that
/// componentize-py and componentize-js embed, measured on their builds of `default`.
const MAX_CORE_INSTANCES: u32 = 32;
const MAX_MEMORIES: u32 = 4;
const MAX_TABLES: u32 = 16;

/// Limits of one decision, from `[policy]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout_ms: u64,
    pub memory_bytes: usize,
    pub max_instances: u32,
    /// Instances kept ready per policy version (`pool.rs`); 0: each decision makes its own.
    pub warm_instances: usize,
}

impl From<&PolicyConfig> for Limits {
    fn from(config: &PolicyConfig) -> Self {
        Self {
            timeout_ms: config.timeout_ms,
            memory_bytes: config.memory_mb as usize * 1024 * 1024,
            max_instances: config.max_instances,
            warm_instances: config.warm_instances as usize,
        }
    }
}

pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<GuestState>,
    limits: Limits,
    cache: Mutex<Vec<([u8; 32], Component)>>,
    /// `[policy] cache_dir`: compiled components kept across restarts.
    disk_cache: Option<DiskCache>,
}

impl PolicyEngine {
    pub fn new(limits: Limits) -> wasmtime::Result<Arc<Self>> {
        Self::with_cache_dir(limits, None)
    }

    /// As [`PolicyEngine::new`], keeping compiled components in `cache_dir` too, so a
    /// restart or another process loads them without compiling (an interpreter policy
    /// takes seconds to compile).
    pub fn with_cache_dir(
        limits: Limits,
        cache_dir: Option<std::path::PathBuf>,
    ) -> wasmtime::Result<Arc<Self>> {
        let n = limits.max_instances;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(n)
            // A Rust component has a main module plus the adapter shims; the interpreters
            // of componentize-py (14 core instances) and componentize-js have more.
            .total_core_instances(n * 8)
            .max_core_instances_per_component(MAX_CORE_INSTANCES)
            .total_memories(n * 2)
            .max_memories_per_component(MAX_MEMORIES)
            .total_tables(n * 4)
            .max_tables_per_component(MAX_TABLES)
            .max_memory_size(limits.memory_bytes)
            // Reset the first pages of memory by rewriting them rather than by an
            // madvise: with a small guest stack this is where a decision's work lives.
            .linear_memory_keep_resident(256 * 1024)
            .table_keep_resident(64 * 1024)
            .pagemap_scan(Enabled::Auto);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .wasm_component_model(true);
        let engine = Engine::new(&config)?;
        spawn_epoch_ticker(&engine);

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        world::Policy::add_to_linker::<_, HasSelf<GuestState>>(&mut linker, |state| state)?;
        let disk_cache = cache_dir.map(|dir| DiskCache::new(dir, &engine));
        Ok(Arc::new(Self {
            engine,
            linker,
            limits,
            cache: Mutex::new(Vec::new()),
            disk_cache,
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Epoch ticks of one decision's deadline.
    pub fn deadline_ticks(&self) -> u64 {
        self.limits.timeout_ms.max(1)
    }

    /// Loads and type-checks a policy from a file.
    pub fn load_file(self: &Arc<Self>, path: &std::path::Path) -> Result<Policy, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        self.load_bytes(&bytes, &path.display().to_string())
    }

    /// Loads and type-checks a policy; `source` names it in errors and in `GET /policy`.
    pub fn load_bytes(self: &Arc<Self>, bytes: &[u8], source: &str) -> Result<Policy, LoadError> {
        let sha256: [u8; 32] = Sha256::digest(bytes).into();
        let component = self.compile(bytes, sha256)?;
        Policy::new(self.clone(), &self.linker, component, sha256, source)
    }

    fn compile(&self, bytes: &[u8], sha256: [u8; 32]) -> Result<Component, LoadError> {
        if let Some((_, component)) = self
            .cache
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| *k == sha256)
        {
            return Ok(component.clone());
        }
        check_is_component(bytes)?;
        let cached = self
            .disk_cache
            .as_ref()
            .and_then(|disk| disk.load(&self.engine, &sha256));
        let component = match cached {
            Some(component) => component,
            None => {
                let component = Component::new(&self.engine, bytes).map_err(|e| {
                    let message = format!("{e:#}");
                    // The pooling allocator checks each memory's and table's minimum
                    // against its slots when compiling: that is a limit, not a bad file.
                    if message.contains("pooling allocator") {
                        LoadError::Limits(message)
                    } else {
                        LoadError::Compile(message)
                    }
                })?;
                if let Some(disk) = &self.disk_cache {
                    disk.store(&sha256, &component);
                }
                component
            }
        };
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= CACHE_ENTRIES {
            cache.remove(0);
        }
        cache.push((sha256, component.clone()));
        Ok(component)
    }
}

/// Compiled components on disk, one file per (component sha256, engine build and
/// settings). Loading one skips compilation, and trusts the file as native code would be
/// trusted: the directory must be writable by the gateway's user only (wasmtime's own
/// compilation cache makes the same bargain).
struct DiskCache {
    dir: std::path::PathBuf,
    /// Changes with the wasmtime version and every setting that affects compiled code.
    engine_hash: u64,
}

impl DiskCache {
    fn new(dir: std::path::PathBuf, engine: &Engine) -> Self {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir,
            engine_hash: hasher.finish(),
        }
    }

    fn path(&self, sha256: &[u8; 32]) -> std::path::PathBuf {
        self.dir.join(format!(
            "{}-{:016x}.cwasm",
            hex::encode(sha256),
            self.engine_hash
        ))
    }

    /// A cached compile, or `None` (absent, or unreadable: then it is compiled again).
    fn load(&self, engine: &Engine, sha256: &[u8; 32]) -> Option<Component> {
        let path = self.path(sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store` below from `Component::serialize` of
        // this engine configuration (the name carries its compatibility hash), in a
        // directory only the gateway writes to; wasmtime checks its header and version.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "compiled policy in the cache unusable; compiling");
                None
            }
        }
    }

    /// Best effort: a cache that cannot be written costs a compile next time, nothing more.
    fn store(&self, sha256: &[u8; 32], component: &Component) {
        let path = self.path(sha256);
        let written = component
            .serialize()
            .map_err(|e| format!("{e:#}"))
            .and_then(|bytes| {
                std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
                // Written beside, then renamed: a reader never sees half a file.
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
                std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep the compiled policy in the cache");
        }
    }
}

/// A clear word for the common mistakes before the compiler's: not Wasm at all, or a core
/// module (built for wasm32-wasip1, or not turned into a component).
fn check_is_component(bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        // The text format is accepted too (tests, hand-written components).
        if std::str::from_utf8(bytes).is_ok_and(|t| t.trim_start().starts_with("(component")) {
            return Ok(());
        }
        return Err(LoadError::NotWasm);
    }
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(LoadError::CoreModule),
        _ => Err(LoadError::Compile(format!(
            "unknown Wasm version/layer {:02x?}",
            &bytes[4..8]
        ))),
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("policy-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn the policy epoch thread");
}

/// The sha256 of `bytes` in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
