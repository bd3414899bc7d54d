//! The bounds of one call: memory (through `StoreLimits`) and output size.
//!
//! Time is bounded by the engine's epochs (see `host`). Memory is bounded per store by
//! wasmtime's `StoreLimits`; this wrapper only remembers that the limit was hit, so a trap can
//! be reported as "out of memory" rather than as an anonymous trap.

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

use super::api::{Addition, Info, Output};

/// `StoreLimits`, remembering whether it refused a growth.
#[derive(Debug)]
pub struct CallLimiter {
    inner: StoreLimits,
    /// A memory growth was refused.
    pub memory_refused: bool,
}

impl CallLimiter {
    /// Limits for one call's store.
    pub fn new(memory_bytes: usize) -> Self {
        Self {
            inner: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                // A wit-component guest is a handful of core instances, tables and memories;
                // these bounds leave room for that and nothing like a fork bomb of instances.
                .instances(32)
                .tables(32)
                .memories(8)
                .table_elements(1 << 16)
                // A refused growth traps at once instead of returning -1 to an allocator that
                // would abort anyway, so the host sees the cause.
                .trap_on_grow_failure(true)
                .build(),
            memory_refused: false,
        }
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let answer = self.inner.memory_growing(current, desired, maximum);
        if !matches!(answer, Ok(true)) {
            self.memory_refused = true;
        }
        answer
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// The size of a returned value: bytes of every string plus one per list item.
pub trait OutputSize {
    /// Its size.
    fn output_size(&self) -> usize;
}

fn opt(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::len)
}

impl OutputSize for Output {
    fn output_size(&self) -> usize {
        let fields: usize = self
            .claim_fields
            .iter()
            .map(|f| 1 + f.key.len() + f.label.len() + f.value.len())
            .sum();
        let display: usize = self.display.iter().map(|l| 1 + l.len()).sum();
        let next = self
            .next_action
            .as_ref()
            .map_or(0, |n| n.code.len() + n.label.len() + opt(&n.due));
        fields + display + self.read_aloud.len() + warnings(&self.warnings) + next
    }
}

impl OutputSize for Addition {
    fn output_size(&self) -> usize {
        let next = self
            .next_action
            .as_ref()
            .map_or(0, |n| n.code.len() + n.label.len() + opt(&n.due));
        warnings(&self.warnings) + next
    }
}

impl OutputSize for Info {
    fn output_size(&self) -> usize {
        self.name.len() + self.version.len() + self.facilities.len()
    }
}

fn warnings(w: &[super::api::Warning]) -> usize {
    w.iter().map(|w| 1 + w.code.len() + w.message.len()).sum()
}
