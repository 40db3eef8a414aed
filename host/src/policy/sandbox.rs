//! The sandbox one decision runs in: a fresh [`Store`] whose guest sees no filesystem,
//! network, environment or stdio (WASI context that grants nothing), has a memory cap,
//! and is stopped at its epoch deadline.

use super::world::cpm::iwf_policy::log;
use std::fmt;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Why a call did not give a usable answer: each is a fail-safe cause in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailCause {
    /// The guest trapped (a panic, an unreachable, a bad memory access).
    Trap,
    /// The guest ran past `[policy] timeout_ms`.
    Timeout,
    /// The guest tried to grow its memory past `[policy] memory_mb`.
    OutOfMemory,
    /// The guest answered, but out of range (see `validate`).
    InvalidResult,
    /// No instance could be made (pool exhausted, instantiation trapped).
    Instantiate,
}

impl FailCause {
    pub const ALL: [FailCause; 5] = [
        FailCause::Trap,
        FailCause::Timeout,
        FailCause::OutOfMemory,
        FailCause::InvalidResult,
        FailCause::Instantiate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailCause::Trap => "trap",
            FailCause::Timeout => "timeout",
            FailCause::OutOfMemory => "out_of_memory",
            FailCause::InvalidResult => "invalid_result",
            FailCause::Instantiate => "instantiate",
        }
    }
}

impl fmt::Display for FailCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed call: the cause and what the runtime said.
#[derive(Debug, Clone)]
pub struct CallError {
    pub cause: FailCause,
    pub detail: String,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.cause, self.detail)
    }
}

/// Longest log line a guest may write; the rest is cut.
const MAX_LOG_BYTES: usize = 1024;
/// Log lines one decision may write; the rest are dropped (and one line says so).
const MAX_LOG_LINES: u32 = 32;

/// The host state of one decision's store.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: MemoryCap,
    policy_name: std::sync::Arc<str>,
    log_lines: u32,
}

impl GuestState {
    pub fn new(memory_bytes: usize, policy_name: std::sync::Arc<str>) -> Self {
        // The defaults grant nothing: no preopens, no environment or arguments, closed
        // stdio, every socket address denied, no name look-ups. Clocks and random remain.
        let wasi = WasiCtx::builder().allow_tcp(false).allow_udp(false).build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limits: MemoryCap {
                bytes: memory_bytes,
                hit: false,
                largest: 0,
            },
            policy_name,
            log_lines: 0,
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// `types` has no functions: nothing to provide.
impl super::world::cpm::iwf_policy::types::Host for GuestState {}

impl log::Host for GuestState {
    fn log(&mut self, level: log::Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(policy = %self.policy_name, "policy log lines beyond {MAX_LOG_LINES} per decision dropped");
            }
            return;
        }
        let message = clean_log_text(&message);
        let policy = &*self.policy_name;
        match level {
            log::Level::Trace => tracing::trace!(target: "policy", policy, "{message}"),
            log::Level::Debug => tracing::debug!(target: "policy", policy, "{message}"),
            log::Level::Info => tracing::info!(target: "policy", policy, "{message}"),
            log::Level::Warn => tracing::warn!(target: "policy", policy, "{message}"),
            log::Level::Error => tracing::error!(target: "policy", policy, "{message}"),
        }
    }
}

/// Control characters (a forged log line via CR/LF) become spaces; long text is cut.
fn clean_log_text(message: &str) -> String {
    let mut end = message.len().min(MAX_LOG_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `[policy] memory_mb`, enforced on every memory growth, remembering that it was hit so
/// that the resulting trap is reported as out-of-memory, not as a plain trap.
struct MemoryCap {
    bytes: usize,
    hit: bool,
    /// The largest size any memory of the instance was given, for `iwf policy check`.
    largest: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.largest = self.largest.max(desired);
        if desired > self.bytes {
            self.hit = true;
            return Err(wasmtime::Error::msg(format!(
                "policy memory cap reached: {desired} bytes asked, {} allowed",
                self.bytes
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// A store ready for one decision: memory cap installed, epoch deadline set.
pub fn new_store(
    engine: &wasmtime::Engine,
    memory_bytes: usize,
    deadline_ticks: u64,
    policy_name: std::sync::Arc<str>,
) -> Store<GuestState> {
    let mut store = Store::new(engine, GuestState::new(memory_bytes, policy_name));
    store.limiter(|state| &mut state.limits);
    store.set_epoch_deadline(deadline_ticks);
    store.epoch_deadline_trap();
    store
}

/// The largest linear memory the store's instance has had, in bytes.
pub fn largest_memory(store: &Store<GuestState>) -> usize {
    store.data().limits.largest
}

/// Names the cause of a failed call from the error and what the store saw.
pub fn classify(store: &Store<GuestState>, error: &wasmtime::Error) -> FailCause {
    if store.data().limits.hit {
        FailCause::OutOfMemory
    } else if matches!(
        error.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) {
        FailCause::Timeout
    } else {
        FailCause::Trap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_cannot_forge_lines_or_flood() {
        assert_eq!(clean_log_text("a\r\nFAKE line"), "a  FAKE line");
        let long = "é".repeat(2000);
        let cut = clean_log_text(&long);
        assert!(cut.len() <= MAX_LOG_BYTES && cut.chars().all(|c| c == 'é'));
    }
}
