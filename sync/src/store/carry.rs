//! Carry-over (カルテ持ち越し): ending a month's retention for every check but a few kept ones
//! ([`super::Store::purge_except`]).
//!
//! A month whose retention is over may still hold checks that must be kept (one still open,
//! say). Its records cannot be deleted one by one — segments are append-only, and a month key
//! seals every record of the month, so a deleted record's ciphertext would still open with the
//! key wherever a copy of it survived. So the kept checks move: their records (same event ids,
//! same signed events) are sealed again under a new *carry-over key* in a new segment, and
//! everything else of the month — its older segments, documents, quarantined bytes and keys —
//! is deleted, the old keys last, which is what makes the deletion real.
//!
//! The order is what makes it safe at a crash or a failed write at any point:
//!
//! 1. the carry-over key is written, durably (file and directory);
//! 2. the kept records, sealed with it, go into a new segment, made durable with its header
//!    and directory entry ([`super::segments::Segments::create_with`], as recovery saves
//!    records found after damage). Until the next step the month holds each kept record
//!    twice, under two keys; indexing keeps the first it meets of an event id, and full reads
//!    skip a repeated id, so nothing is doubled, and nothing is deleted yet;
//! 3. the commit point: `carried/YYYY-MM.json` ([`super::retention::CarriedCounts`]) gets the
//!    removed counts and a note of the carry-over segment and key, durably. From here on the
//!    deletion is finished by this call, the next one, or the next open ([`finish`]), and the
//!    removed counts are counted once;
//! 4. the month's index is replaced, in one sled batch, by what the carry-over segment and
//!    any later ones hold; the older segments are forgotten;
//! 5. the older segments are deleted, then the month's documents and temporary files, then its
//!    quarantined bytes (each directory fsynced), then every key but the carry-over key;
//! 6. the note is cleared.
//!
//! A crash before 3 leaves duplicates by event id (harmless; the next call starts again with a
//! new key, and deletes the first attempt's segment and key with the rest) or an orphan key
//! that decrypts nothing; after 3, the open finishes the deletion before indexing.
//!
//! Out of scope: peers. A paired device that still holds the month's old key and records can
//! send them again (see `sync/README.md`, "Limits known and left").

use std::collections::BTreeMap;
use std::io;

use crate::event::Month;
use crate::vfs;

use super::retention::PendingCarry;
use super::segment::{self, HEADER_LEN};
use super::{lock, recovery, seal_as_record, unseal, Store, StoreError};

fn write_error(path: impl std::fmt::Display) -> impl FnOnce(io::Error) -> StoreError {
    move |source| StoreError::Write {
        path: path.to_string(),
        source,
    }
}

/// Carries `kept` (checks of `month`, at least one, not all) over and ends the month's
/// retention for the rest, adding `removed` to its carried counts. The caller holds the
/// commit gate and has compared the month's counts.
pub(crate) fn carry_over(
    store: &Store,
    month: Month,
    kept: &[String],
    removed: &serde_json::Value,
) -> Result<(), StoreError> {
    let inner = &store.inner;
    // The kept records, opened first: a record that cannot be read now stops the carry-over
    // before anything is written (and before a key is made that nothing would use).
    let mut kept_events = Vec::new();
    for check in kept {
        let Some(entry) = inner.index.check(month, check)? else {
            continue;
        };
        for loc in entry.locs {
            let record = store.read_frame(month, loc)?;
            let old = inner
                .keys
                .get(month, record.key_id)?
                .ok_or(StoreError::NoKey {
                    month,
                    key: record.key_id,
                })?;
            kept_events.push(unseal(month, &old, &record)?);
        }
    }
    if kept_events.is_empty() {
        // The caller found the kept checks in the index under the gate: they have records.
        return Err(StoreError::Damaged {
            at: format!("{month}"),
            reason: "the kept checks have no records in the index; nothing was changed".into(),
        });
    }
    // Records that do not open here (no key for them yet) cannot be told apart: they are
    // kept as they are, never dropped on a guess.
    let mut unopened = Vec::new();
    for loc in inner.index.unreadable(month)? {
        unopened.push(store.read_frame(month, loc)?);
    }
    // 1. The carry-over key, durable before anything is sealed with it.
    let (key_id, key) = inner.keys.create_carry_key(month)?;
    // 2. The kept records sealed again with it (same signed events, same ids), durable in
    // a new segment.
    let mut frames = Vec::new();
    for signed in &kept_events {
        frames.extend_from_slice(&seal_as_record(month, key_id, &key, signed).frame());
    }
    for record in &unopened {
        frames.extend_from_slice(&record.frame());
    }
    let left = inner
        .segments
        .list(month)
        .into_iter()
        .next_back()
        .unwrap_or((0, HEADER_LEN));
    let (segment, _, _) = inner
        .segments
        .create_with(month, left, &frames)
        .map_err(|e| StoreError::Write {
            path: e.path.display().to_string(),
            source: e.source,
        })?;
    // 3. The commit point.
    inner
        .carried
        .commit(
            month,
            removed,
            PendingCarry {
                key: key_id.to_string(),
                segment,
            },
        )
        .map_err(write_error(format_args!("carried/{month}.json")))?;
    tracing::info!(%month, kept = kept.len(), segment, "carry-over committed; deleting the rest of the month");
    // 4–6.
    finish(store, month)?;
    Ok(())
}

/// Finishes the carry-over of `month` noted in `carried/`, if one is: steps 3 (again, if its
/// write may not have reached the disk) to 6 of the [module docs](self). Idempotent; returns
/// whether there was one. The caller holds the commit gate, or is opening the store (then no
/// segment is registered yet, the month's index entries are only removed, and the open
/// indexes what remains).
pub(crate) fn finish(store: &Store, month: Month) -> Result<bool, StoreError> {
    let inner = &store.inner;
    // A note whose write failed may or may not be on disk: written again first (a commit
    // before anything is deleted; a finished one so the next open does not finish it again).
    inner
        .carried
        .make_durable(month)
        .map_err(write_error(format_args!("carried/{month}.json")))?;
    let Some(pending) = inner.carried.get(month).and_then(|c| c.pending) else {
        return Ok(false);
    };
    let damaged = |why: String| StoreError::Damaged {
        at: format!("carried/{month}.json"),
        reason: why,
    };
    let key = pending
        .key_id()
        .ok_or_else(|| damaged(format!("not a key id: {:?}", pending.key)))?;
    let carry_segment = inner.segments.path(month, pending.segment);
    // Nothing is deleted unless the records it keeps are there (they were made durable
    // before the note; only something outside the store could have taken them).
    match inner.vfs.is_dir(&carry_segment) {
        Ok(Some(false)) => {}
        Ok(_) => {
            return Err(damaged(format!(
                "carry-over segment {} is missing; nothing was deleted",
                carry_segment.display()
            )))
        }
        Err(source) => {
            return Err(StoreError::Read {
                path: carry_segment.display().to_string(),
                source,
            })
        }
    }
    // Whatever is durable is indexed first: the index is replaced below from the segments,
    // and no work naming an older segment may be applied after that.
    store.fresh()?;
    let _no_documents = inner.purging.write().unwrap_or_else(|p| p.into_inner());
    {
        // 4. The index, from the carry-over segment and the later ones.
        let _ix = lock(&inner.index_lock);
        let mut records = Vec::new();
        let mut unreadable = Vec::new();
        let mut ends = BTreeMap::new();
        for (seg, end) in inner.segments.list(month) {
            if seg < pending.segment {
                continue;
            }
            let found = store.records_in(month, seg, HEADER_LEN, end)?;
            let (good, bad) = recovery::opened(store, month, seg, found)?;
            records.extend(good);
            unreadable.extend(bad);
            ends.insert(seg, end);
        }
        inner.index.replace_month(
            month,
            records,
            &unreadable,
            &ends,
            inner.classifier.as_ref(),
        )?;
        inner.segments.forget_below(month, pending.segment);
    }
    // Fewer checks now: let the month's known ids be loaded again (too many would only
    // cost index reads).
    inner.known.forget(month);
    inner.docs.forget(month);
    // 5. The older segments, the documents, temporary files.
    let dir = inner.segments.month_dir(month);
    let names = inner
        .vfs
        .read_dir(&dir)
        .map_err(|source| StoreError::Read {
            path: dir.display().to_string(),
            source,
        })?;
    for name in names {
        let older = segment::parse_file_name(&name).is_some_and(|n| n < pending.segment);
        if older || name.starts_with("doc.") || vfs::is_temporary(&name) {
            let path = dir.join(&name);
            match inner.vfs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(write_error(path.display())(source)),
            }
        }
    }
    // Synced even when this call removed nothing: an earlier one may have removed names and
    // failed before its sync.
    inner
        .vfs
        .sync_dir(&dir)
        .map_err(write_error(dir.display()))?;
    let quarantined = recovery::quarantined_files(store, month)?;
    for path in &quarantined {
        match inner.vfs.remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(write_error(path.display())(source)),
        }
    }
    if !quarantined.is_empty() || matches!(inner.vfs.is_dir(&inner.quarantine), Ok(Some(true))) {
        // (Also when nothing is left to remove: an earlier call may have failed before its
        // sync.)
        inner
            .vfs
            .sync_dir(&inner.quarantine)
            .map_err(write_error(inner.quarantine.display()))?;
    }
    // Then the keys: the old records are gone first, so a crash never leaves a record of the
    // month without its key.
    inner.keys.retire_all_but(month, key)?;
    // 6.
    inner
        .carried
        .finished(month)
        .map_err(write_error(format_args!("carried/{month}.json")))?;
    Ok(true)
}
