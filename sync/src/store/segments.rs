//! The segments of every month on disk: appending (only ever by the commit leader, see
//! [`super::commit`]), reading a record where the index says it is, and the bookkeeping of
//! which segment each month appends to.
//!
//! An append is one committed group (`write` + `fdatasync`) at the segment's known end. If
//! either fails, the segment is cut back to that end and fsynced; if even that fails, the
//! segment is *left*, and a new segment is started at once, its header recording where the
//! left one's valid bytes end ([`super::segment::Header::left`]). Either way, no later
//! append is acknowledged until the failed bytes can no longer be read as records. A new
//! segment's header and its directory entry are fsynced before the first record goes in.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::event::Month;
use crate::vfs::{self, OpenMode, VFile, Vfs};

use super::index::Loc;
use super::segment::{self, Header, HEADER_LEN};

/// One segment file.
#[derive(Debug, Clone)]
struct Seg {
    /// Opened on first use.
    file: Option<Arc<dyn VFile>>,
    /// Bytes that hold acknowledged records (or records received whole): the end of what
    /// may be read.
    valid_len: u64,
    /// The file's length, zero-filled past `valid_len` (see [`PREALLOCATE`]); `None` until
    /// asked.
    allocated: Option<u64>,
}

/// How far ahead of the end a segment is filled with zeros. Overwriting blocks already
/// written changes no file metadata, so an append's fdatasync needs no journal commit — on
/// ext4 a journal commit also waits for other files' dirty data (data=ordered), such as
/// sled's, and that is what made the slowest captures slow. The zeros are never read as
/// records (a record counts only inside a committed group).
pub(crate) const PREALLOCATE: u64 = 1024 * 1024;

#[derive(Debug, Default)]
struct MonthSegs {
    segs: BTreeMap<u32, Seg>,
    /// The segment appends go to; `None` until the first append, or after a failed one that
    /// could not be rolled back.
    active: Option<u32>,
    /// A segment that was left and whose end no durable header records yet.
    left: Option<(u32, u64)>,
    /// The highest segment number tried: a failed creation may leave a file behind, and
    /// its number is never tried again.
    tried: u32,
}

/// The segments of every month.
#[derive(Debug)]
pub(crate) struct Segments {
    vfs: Arc<dyn Vfs>,
    root: PathBuf,
    segment_bytes: u64,
    months: Mutex<HashMap<Month, MonthSegs>>,
}

/// A failed append: what the disk said, and about which file.
#[derive(Debug)]
pub(crate) struct AppendError {
    /// The error.
    pub source: io::Error,
    /// The path of the segment (or of the one that could not be created).
    pub path: PathBuf,
}

impl Segments {
    pub(crate) fn new(vfs: Arc<dyn Vfs>, root: &Path, segment_bytes: u64) -> Self {
        Self {
            vfs,
            root: root.to_path_buf(),
            segment_bytes: segment_bytes.max(HEADER_LEN + 1),
            months: Mutex::new(HashMap::new()),
        }
    }

    fn months(&self) -> std::sync::MutexGuard<'_, HashMap<Month, MonthSegs>> {
        // No critical section below can panic half-way: a poisoned lock still holds
        // consistent data.
        self.months.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The month's directory.
    pub(crate) fn month_dir(&self, month: Month) -> PathBuf {
        self.root.join(month.to_string())
    }

    /// The path of a segment.
    pub(crate) fn path(&self, month: Month, number: u32) -> PathBuf {
        self.month_dir(month).join(segment::file_name(number))
    }

    /// Registers a segment found at open with its valid length.
    pub(crate) fn register(&self, month: Month, number: u32, valid_len: u64) {
        self.months().entry(month).or_default().segs.insert(
            number,
            Seg {
                file: None,
                valid_len,
                allocated: None,
            },
        );
    }

    /// Sets where the valid bytes of a registered segment end (recovery, after a scan).
    pub(crate) fn set_valid(&self, month: Month, number: u32, valid_len: u64) {
        if let Some(seg) = self
            .months()
            .get_mut(&month)
            .and_then(|m| m.segs.get_mut(&number))
        {
            seg.valid_len = valid_len;
        }
    }

    /// Notes that a segment file numbered `number` exists (or existed): new segments are
    /// numbered after it.
    pub(crate) fn saw_number(&self, month: Month, number: u32) {
        let mut months = self.months();
        let m = months.entry(month).or_default();
        m.tried = m.tried.max(number);
    }

    /// Leaves segment `number` of `month` at `end`: nothing more is appended to it, and the
    /// next segment's header records where it ends.
    pub(crate) fn leave(&self, month: Month, number: u32, end: u64) {
        let mut months = self.months();
        let m = months.entry(month).or_default();
        if m.active == Some(number) {
            m.active = None;
        }
        m.left = Some((number, end));
        if let Some(seg) = m.segs.get_mut(&number) {
            seg.valid_len = seg.valid_len.min(end);
        }
    }

    /// Sets the segment appends of `month` continue in (at open: the last one, if whole).
    pub(crate) fn set_active(&self, month: Month, number: Option<u32>) {
        self.months().entry(month).or_default().active = number;
    }

    /// The months with segments.
    pub(crate) fn month_list(&self) -> Vec<Month> {
        let mut out: Vec<Month> = self
            .months()
            .iter()
            .filter(|(_, m)| !m.segs.is_empty())
            .map(|(k, _)| *k)
            .collect();
        out.sort();
        out
    }

    /// The segments of `month` and their valid lengths.
    pub(crate) fn list(&self, month: Month) -> BTreeMap<u32, u64> {
        self.months()
            .get(&month)
            .map(|m| m.segs.iter().map(|(n, s)| (*n, s.valid_len)).collect())
            .unwrap_or_default()
    }

    /// Forgets the segments of `month` numbered below `number` (a carry-over deletes them:
    /// see [`super::Store::purge_except`]). Later segments are still numbered after every
    /// number used.
    pub(crate) fn forget_below(&self, month: Month, number: u32) {
        if let Some(m) = self.months().get_mut(&month) {
            if let Some(&last) = m.segs.keys().next_back() {
                m.tried = m.tried.max(last);
            }
            m.segs.retain(|n, _| *n >= number);
            if m.active.is_some_and(|a| a < number) {
                m.active = None;
            }
            if m.left.is_some_and(|(l, _)| l < number) {
                m.left = None;
            }
        }
    }

    /// Forgets everything of `month` (after a purge).
    pub(crate) fn forget(&self, month: Month) {
        self.months().remove(&month);
    }

    fn file(&self, month: Month, number: u32) -> io::Result<(Arc<dyn VFile>, u64)> {
        let (existing, valid_len) = {
            let months = self.months();
            let seg = months
                .get(&month)
                .and_then(|m| m.segs.get(&number))
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such segment"))?;
            (seg.file.clone(), seg.valid_len)
        };
        if let Some(file) = existing {
            return Ok((file, valid_len));
        }
        let file = self
            .vfs
            .open(&self.path(month, number), OpenMode::ReadWrite)?;
        if let Some(seg) = self
            .months()
            .get_mut(&month)
            .and_then(|m| m.segs.get_mut(&number))
        {
            seg.file.get_or_insert_with(|| file.clone());
        }
        Ok((file, valid_len))
    }

    /// Reads the bytes of the valid part of a segment from `from` (scans at open, document
    /// catch-up, full reads).
    pub(crate) fn read_from(&self, month: Month, number: u32, from: u64) -> io::Result<Vec<u8>> {
        let (file, valid_len) = self.file(month, number)?;
        let from = from.min(valid_len);
        let mut buf = vec![0; usize::try_from(valid_len - from).map_err(io::Error::other)?];
        vfs::read_exact_at(file.as_ref(), &mut buf, from)?;
        Ok(buf)
    }

    /// Reads the frame at `loc`.
    pub(crate) fn read(&self, month: Month, loc: Loc) -> io::Result<Vec<u8>> {
        let (file, valid_len) = self.file(month, loc.seg)?;
        if loc.end() > valid_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "index points past the segment's end",
            ));
        }
        let mut buf = vec![0; loc.len as usize];
        vfs::read_exact_at(file.as_ref(), &mut buf, loc.offset)?;
        Ok(buf)
    }

    /// Appends `frames` (whole records) to `month` as one committed group and makes them
    /// durable; returns the segment, the offset they start at and where the group ends. On
    /// error nothing of them can be read as a record afterwards (rolled back, or the segment
    /// left). Only the commit leader calls this.
    pub(crate) fn append(
        &self,
        month: Month,
        frames: &[u8],
    ) -> Result<(u32, u64, u64), AppendError> {
        let mut group = Vec::with_capacity(frames.len() + 64);
        group.extend_from_slice(frames);
        group.extend_from_slice(&segment::commit(frames));
        let (number, file, end) = self.writable(month, group.len() as u64)?;
        let path = self.path(month, number);
        self.preallocate(month, number, file.as_ref(), end + group.len() as u64)
            .map_err(|source| AppendError {
                source,
                path: path.clone(),
            })?;
        let written = vfs::write_all_at(file.as_ref(), &group, end).and_then(|()| file.sync_data());
        match written {
            Ok(()) => {
                let new_end = end + group.len() as u64;
                if let Some(seg) = self
                    .months()
                    .get_mut(&month)
                    .and_then(|m| m.segs.get_mut(&number))
                {
                    seg.valid_len = new_end;
                }
                Ok((number, end, new_end))
            }
            Err(source) => {
                // Roll back to the last acknowledged end; if the disk refuses even that,
                // leave the segment, and try at once to start the next one, whose header
                // records where this one ends: until a durable header says so, a restart
                // would read the failed group back.
                let rolled_back = file.set_len(end).and_then(|()| file.sync_data());
                self.set_allocated(month, number, rolled_back.as_ref().ok().map(|()| end));
                if let Err(e) = rolled_back {
                    tracing::error!(segment = %path.display(), error = %e, "cannot roll back a failed append; leaving the segment");
                    self.leave(month, number, end);
                    if let Err(e) = self.writable(month, 0) {
                        tracing::error!(segment = %e.path.display(), error = %e.source, "cannot start a new segment either; the failed group may be read back after a restart");
                    }
                }
                Err(AppendError { source, path })
            }
        }
    }

    /// Makes sure segment `number` is zero-filled (and that durably) up to `needed`, a
    /// [`PREALLOCATE`] step ahead. A failure leaves only zeros behind.
    fn preallocate(
        &self,
        month: Month,
        number: u32,
        file: &dyn VFile,
        needed: u64,
    ) -> io::Result<()> {
        let known = self
            .months()
            .get(&month)
            .and_then(|m| m.segs.get(&number))
            .and_then(|s| s.allocated);
        let allocated = match known {
            Some(a) => a,
            None => file.size()?,
        };
        if needed <= allocated {
            self.set_allocated(month, number, Some(allocated));
            return Ok(());
        }
        let step = PREALLOCATE.min(self.segment_bytes);
        let target = needed + step;
        let zeros = vec![0u8; 64 * 1024];
        let mut at = allocated;
        while at < target {
            let n = (target - at).min(zeros.len() as u64) as usize;
            vfs::write_all_at(file, &zeros[..n], at)?;
            at += n as u64;
        }
        file.sync_data()?;
        self.set_allocated(month, number, Some(target));
        Ok(())
    }

    fn set_allocated(&self, month: Month, number: u32, allocated: Option<u64>) {
        if let Some(seg) = self
            .months()
            .get_mut(&month)
            .and_then(|m| m.segs.get_mut(&number))
        {
            seg.allocated = allocated;
        }
    }

    /// Starts a new segment of `month` holding `frames` as one committed group, made
    /// durable with its header before it is registered: how recovery saves again the
    /// records found after damage in segment `left.0`, whose valid end the header records.
    pub(crate) fn create_with(
        &self,
        month: Month,
        left: (u32, u64),
        frames: &[u8],
    ) -> Result<(u32, u64, u64), AppendError> {
        let next = {
            let mut months = self.months();
            let m = months.entry(month).or_default();
            let next = m.segs.keys().next_back().copied().unwrap_or(0).max(m.tried) + 1;
            m.tried = next;
            next
        };
        let header = Header {
            month,
            number: next,
            left: Some(left),
        };
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(frames);
        bytes.extend_from_slice(&segment::commit(frames));
        let path = self.path(month, next);
        let file = self
            .create(month, &path, &bytes)
            .map_err(|source| AppendError {
                source,
                path: path.clone(),
            })?;
        let end = bytes.len() as u64;
        let mut months = self.months();
        let m = months.entry(month).or_default();
        m.segs.insert(
            next,
            Seg {
                file: Some(file),
                valid_len: end,
                allocated: Some(end),
            },
        );
        m.active = Some(next);
        m.left = None;
        Ok((next, HEADER_LEN, end))
    }

    /// The segment the next `len` bytes of `month` go to, its file and its end: the active
    /// one, or a new one when there is none or it is full.
    fn writable(&self, month: Month, len: u64) -> Result<(u32, Arc<dyn VFile>, u64), AppendError> {
        let (active, left, next) = {
            let months = self.months();
            let m = months.get(&month);
            let active = m.and_then(|m| {
                let n = m.active?;
                let seg = m.segs.get(&n)?;
                Some((n, seg.valid_len))
            });
            let next = m
                .map(|m| m.segs.keys().next_back().copied().unwrap_or(0).max(m.tried))
                .unwrap_or(0)
                + 1;
            (active, m.and_then(|m| m.left), next)
        };
        if let Some((n, end)) = active {
            if end <= HEADER_LEN || end + len <= self.segment_bytes {
                let (file, _) = self.file(month, n).map_err(|source| AppendError {
                    source,
                    path: self.path(month, n),
                })?;
                return Ok((n, file, end));
            }
        }
        // Leaving a full segment records its end in the new one's header, like a broken one.
        let leaving = left.or(active);
        if let Some((n, end)) = active.filter(|_| left.is_none()) {
            // Its zeros ahead are not needed any more (tidying: not made durable, and harmless
            // if lost).
            if let Ok((f, _)) = self.file(month, n) {
                if f.set_len(end).is_ok() {
                    self.set_allocated(month, n, Some(end));
                }
            }
        }
        let header = Header {
            month,
            number: next,
            left: leaving,
        };
        let path = self.path(month, next);
        self.months().entry(month).or_default().tried = next;
        let file = self
            .create(month, &path, &header.encode())
            .map_err(|source| AppendError {
                source,
                path: path.clone(),
            })?;
        let mut months = self.months();
        let m = months.entry(month).or_default();
        m.segs.insert(
            next,
            Seg {
                file: Some(file.clone()),
                valid_len: HEADER_LEN,
                allocated: Some(HEADER_LEN),
            },
        );
        m.active = Some(next);
        m.left = None;
        Ok((next, file, HEADER_LEN))
    }

    /// Creates segment file `path` holding `bytes` (a header, maybe records), durable with
    /// its directory entry. A file this call created is removed again if a step fails (it
    /// holds nothing acknowledged); one that was there already is left alone.
    fn create(&self, month: Month, path: &Path, bytes: &[u8]) -> io::Result<Arc<dyn VFile>> {
        vfs::create_dir_all_durable(self.vfs.as_ref(), &self.month_dir(month))?;
        let file = self.vfs.open(path, OpenMode::CreateNew)?;
        let made = vfs::write_all_at(file.as_ref(), bytes, 0)
            .and_then(|()| file.sync_data())
            .and_then(|()| self.vfs.sync_dir(&self.month_dir(month)));
        if let Err(e) = made {
            let _ = self.vfs.remove_file(path);
            return Err(e);
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::event::EventId;
    use crate::store::keys::KeyId;
    use crate::store::segment::{scan, End, Record};
    use crate::vfs::sim::{Fault, SimFs};

    fn nov() -> Month {
        Month::new(2026, 11).unwrap()
    }

    fn frames(first: u8, n: u8) -> Vec<u8> {
        (first..first + n)
            .flat_map(|i| {
                Record {
                    key_id: KeyId([i; 8]),
                    id: EventId([i; 16]),
                    sealed: vec![i; 300],
                }
                .frame()
            })
            .collect()
    }

    /// The first byte of each record's id, and whether anything but zeros (filled ahead for
    /// appends) follows the last committed group.
    fn ids_in(fs: &SimFs, path: &Path) -> (Vec<u8>, bool) {
        let bytes = vfs::read_file(fs, path).unwrap();
        let s = scan(&bytes[HEADER_LEN as usize..], HEADER_LEN);
        let clean = matches!(s.end, End::Clean | End::Torn { zeros: true, .. });
        (s.records.iter().map(|f| f.record.id.0[0]).collect(), clean)
    }

    fn setup() -> (Arc<SimFs>, Segments) {
        let fs = SimFs::new();
        let vfs: Arc<dyn Vfs> = fs.clone();
        let segs = Segments::new(vfs, Path::new("/data/months"), 1 << 20);
        segs.append(nov(), &frames(0, 2)).unwrap();
        (fs, segs)
    }

    #[test]
    fn a_failed_group_is_rolled_back_before_the_next_append() {
        // It cuts what a failed fsync left in the file, so no record of the failed group is
        // ever read back, even when the next group is shorter (issue 8, path 8).
        let (fs, segs) = setup();
        fs.fail_after(1, Fault::Eio); // the write goes through, its fsync fails
        assert!(segs.append(nov(), &frames(10, 3)).is_err());
        segs.append(nov(), &frames(20, 1)).unwrap();
        let path = segs.path(nov(), 1);
        assert_eq!(ids_in(&fs, &path), (vec![0, 1, 20], true));
        // And after a power cut, the same.
        fs.crash(3);
        fs.restart();
        assert_eq!(ids_in(&fs, &path), (vec![0, 1, 20], true));
    }

    #[test]
    fn a_segment_that_cannot_be_rolled_back_is_left_and_the_next_header_says_where_it_ends() {
        let (fs, segs) = setup();
        let end = segs.list(nov())[&1];
        // The write goes through; its fsync fails, and so does the rollback's cut.
        fs.fail_run(1, 2, Fault::Eio);
        assert!(segs.append(nov(), &frames(10, 3)).is_err());
        segs.append(nov(), &frames(20, 1)).unwrap();
        let bytes = vfs::read_file(fs.as_ref(), &segs.path(nov(), 2)).unwrap();
        let header = Header::decode(&bytes).unwrap();
        assert_eq!(
            header.left,
            Some((1, end)),
            "the left segment's end is recorded"
        );
        assert_eq!(ids_in(&fs, &segs.path(nov(), 2)).0, vec![20]);
        // The failed group is still in segment 1 (the disk refused to cut it), past `end`.
        assert_eq!(ids_in(&fs, &segs.path(nov(), 1)).0, vec![0, 1, 10, 11, 12]);
        assert_eq!(segs.list(nov())[&1], end, "but it is never read");
    }
}
