//! Held file descriptors, so that files and directories read every round cost one system call
//! each instead of a path lookup, an `open`, a `read` and a `close`.
//!
//! - [`CachedFile`]: a file kept open and re-read with `pread` at offset 0. cgroupfs (kernfs)
//!   files are `seq_file`s, which regenerate their content on a read from offset 0; regular
//!   and tmpfs files return their current content. A read error on a held descriptor (`ENODEV`
//!   once the cgroup is removed) drops it, and the file is read again by path, so the caller
//!   sees exactly what a fresh `open` would have given (`ENOENT` for a vanished cgroup).
//! - [`CachedDir`]: a directory kept open and re-listed with `lseek(0)` + `getdents64` every
//!   round: no path lookup, and no allocation when the listing did not change.
//! - [`Watcher`]: inotify watches on those directories (cgroupfs reports the `mkdir` and
//!   `rmdir` of cgroups like any file system): a directory is listed again only after an event
//!   on it, and always when it has no watch (watch limit reached) or the queue overflowed.
//! - [`FdBudget`]: a cap on the descriptors held, shared by everything a sampler holds. Past
//!   the cap, files are opened, read and closed as before. [`raise_nofile_limit`] lifts the
//!   soft `RLIMIT_NOFILE` to the hard limit at start, and the cap is at most half of it, so
//!   the server keeps room for connections.
//!
//! A held cgroupfs file costs kernel memory, charged to the agent's cgroup: its `seq_file`
//! buffer (a page) and the open file, about 5.5 KiB once read (measured on a 6.x kernel).

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::collections::HashSet;

use rustix::fs::inotify::{self, ReadFlags, WatchFlags};
use rustix::fs::{FileType, OFlags, RawDir};

/// Bytes read at once: every cgroup interface file the sampler reads fits.
pub const READ_CAPACITY: usize = 4096;

/// Descriptors kept free of the budget for everything else (sockets, the pod watch, logs).
const RESERVE: usize = 256;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit in force after.
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if let Some(hard) = lim.maximum
        && lim.current.is_some_and(|soft| soft < hard)
    {
        lim.current = Some(hard);
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::debug!(error = %e, "could not raise RLIMIT_NOFILE");
        }
    }
    current_nofile_limit()
}

/// True if `path` is on a cgroup file system (v1 or v2), whose interface files are only ever
/// removed with their cgroup (a held descriptor then reads `ENODEV`).
pub fn is_cgroupfs(path: &Path) -> bool {
    const CGROUP_SUPER_MAGIC: u64 = 0x0027_e0eb;
    const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
    rustix::fs::statfs(path).is_ok_and(|st| {
        let t = st.f_type as u64;
        t == CGROUP_SUPER_MAGIC || t == CGROUP2_SUPER_MAGIC
    })
}

/// The soft `RLIMIT_NOFILE` (unlimited reads as `u64::MAX`).
pub fn current_nofile_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

#[derive(Debug)]
struct BudgetInner {
    open: AtomicUsize,
    cap: usize,
}

/// How many descriptors may be held at once (shared; cheap to clone).
#[derive(Clone, Debug)]
pub struct FdBudget(Arc<BudgetInner>);

impl FdBudget {
    /// A budget of `cap` descriptors.
    pub fn with_cap(cap: usize) -> Self {
        Self(Arc::new(BudgetInner {
            open: AtomicUsize::new(0),
            cap,
        }))
    }

    /// At most `max`, and at most half of the soft `RLIMIT_NOFILE` in force (less a reserve).
    pub fn from_rlimit(max: usize) -> Self {
        let soft = usize::try_from(current_nofile_limit()).unwrap_or(usize::MAX);
        Self::with_cap(max.min(soft / 2).min(soft.saturating_sub(RESERVE)))
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.0.cap
    }

    /// Descriptors held now.
    pub fn held(&self) -> usize {
        self.0.open.load(Ordering::Relaxed)
    }

    /// Takes one descriptor from the budget, if any is left.
    fn take(&self) -> bool {
        let cap = self.0.cap;
        self.0
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_ok()
    }

    fn give(&self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A descriptor counted in a budget; returned to it on drop.
#[derive(Debug)]
struct Held<T> {
    fd: T,
    budget: FdBudget,
}

impl<T> Held<T> {
    fn new(fd: T, budget: &FdBudget) -> Result<Self, T> {
        if budget.take() {
            Ok(Self {
                fd,
                budget: budget.clone(),
            })
        } else {
            Err(fd)
        }
    }
}

impl<T> Drop for Held<T> {
    fn drop(&mut self) {
        self.budget.give();
    }
}

/// Reads a whole file with positional reads from offset 0 into `buf` (grown as needed; its
/// length is left at the capacity read into) and returns the number of bytes. A read that
/// returns less than it was offered is the end of the file: regular files and kernfs
/// `seq_file`s only return short at their end.
fn pread_all(file: &File, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.len() < READ_CAPACITY {
        buf.resize(READ_CAPACITY, 0);
    }
    let mut n = 0;
    loop {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => return Ok(n),
            Ok(k) => {
                n += k;
                if n < buf.len() {
                    return Ok(n);
                }
                let grown = buf.len() * 2;
                buf.resize(grown, 0);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A file that is read every round, held open while the budget allows.
#[derive(Debug, Default)]
pub struct CachedFile {
    held: Option<Held<File>>,
}

impl CachedFile {
    /// True while a descriptor is held.
    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Reads the whole file into `buf` and returns its length: through the held descriptor,
    /// else (or if that read fails) by opening `path()`, keeping the new descriptor if
    /// `hold` and `budget` allow. With `verify`, a held
    /// file is first checked (`fstat`) not to have been unlinked: needed outside cgroupfs,
    /// where a file can be removed on its own and its descriptor still reads the old content.
    pub fn read(
        &mut self,
        path: impl FnOnce() -> std::path::PathBuf,
        budget: &FdBudget,
        hold: bool,
        verify: bool,
        buf: &mut Vec<u8>,
    ) -> io::Result<usize> {
        if let Some(h) = &self.held {
            // Outside cgroupfs a file can be unlinked while held, and would go on reading.
            let unlinked = verify && rustix::fs::fstat(&h.fd).is_ok_and(|st| st.st_nlink == 0);
            match pread_all(&h.fd, buf) {
                Ok(n) if !unlinked => return Ok(n),
                // ENODEV (cgroup removed), or anything else: forget the descriptor and answer
                // what a fresh open would.
                _ => self.held = None,
            }
        }
        let file = File::open(path())?;
        let n = pread_all(&file, buf)?;
        if hold {
            self.held = Held::new(file, budget).ok();
        }
        Ok(n)
    }

    /// Closes the held descriptor, if any.
    pub fn forget(&mut self) {
        self.held = None;
    }
}

/// Change notifications (inotify) for directories the sampler re-lists or holds files of.
///
/// A watch is added before its directory is listed (or its files opened), so every change
/// after the listing queues an event; [`Watcher::drain`] reads them at the start of a round.
#[derive(Debug)]
pub struct Watcher {
    fd: Option<OwnedFd>,
    /// Watches with events drained this round.
    dirty: HashSet<i32>,
    /// The queue overflowed (or could not be read): every directory counts as changed this
    /// round.
    all_dirty: bool,
    buf: Vec<u8>,
}

impl Default for Watcher {
    fn default() -> Self {
        Self::new()
    }
}

/// Entry changes of a directory, and its own removal.
const DIR_EVENTS: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF)
    .union(WatchFlags::ONLYDIR);

impl Watcher {
    /// An inotify instance; without one (`inotify_init1` failed), nothing is ever watched
    /// and every directory is listed every round.
    pub fn new() -> Self {
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(
                |e| tracing::debug!(error = %e, "no inotify: directories are listed every round"),
            )
            .ok();
        Self {
            fd,
            dirty: HashSet::new(),
            all_dirty: false,
            buf: Vec::new(),
        }
    }

    /// A watcher that watches nothing: every directory is listed every round.
    pub fn disabled() -> Self {
        Self {
            fd: None,
            dirty: HashSet::new(),
            all_dirty: false,
            buf: Vec::new(),
        }
    }

    /// Watches the directory `path` for entries created, removed or renamed and for its own
    /// removal; `None` if it cannot be watched (then it must be checked some other way).
    pub fn watch(&mut self, path: &Path) -> Option<i32> {
        let fd = self.fd.as_ref()?;
        match inotify::add_watch(fd, path, DIR_EVENTS) {
            Ok(wd) => Some(wd),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "no inotify watch");
                None
            }
        }
    }

    /// Stops watching `wd` (its directory is no longer listed).
    pub fn unwatch(&mut self, wd: i32) {
        if let Some(fd) = &self.fd {
            let _ = inotify::remove_watch(fd, wd);
        }
        self.dirty.remove(&wd);
    }

    /// Reads every queued event; call once per round, before listing.
    pub fn drain(&mut self) {
        let Some(fd) = &self.fd else { return };
        if self.buf.capacity() < 16 * 1024 {
            self.buf.reserve(16 * 1024);
        }
        let mut reader = inotify::Reader::new(fd, self.buf.spare_capacity_mut());
        loop {
            match reader.next() {
                Ok(e) => {
                    if e.events().contains(ReadFlags::QUEUE_OVERFLOW) {
                        self.all_dirty = true;
                    } else {
                        self.dirty.insert(e.wd());
                    }
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "reading inotify events");
                    self.all_dirty = true;
                    break;
                }
            }
        }
    }

    /// True if the directory of `wd` had events queued before this round's [`Watcher::drain`].
    /// Several owners may share a watch (one per inode): each asks once per round.
    pub fn changed(&self, wd: i32) -> bool {
        self.all_dirty || self.dirty.contains(&wd)
    }

    /// Ends a round: every owner of a watch has asked about it.
    pub fn end_round(&mut self) {
        self.all_dirty = false;
        self.dirty.clear();
    }
}

/// One entry of a directory listing: a subdirectory's name and inode number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub ino: u64,
}

/// A directory whose subdirectories are listed every round, held open while the budget
/// allows.
#[derive(Debug, Default)]
pub struct CachedDir {
    held: Option<Held<OwnedFd>>,
    /// Its inotify watch, if any: without events on it, the last listing still holds.
    wd: Option<i32>,
    /// Subdirectories in the order `getdents64` returned them (to detect a change cheaply).
    raw: Vec<DirEntry>,
    /// The same, sorted by name.
    sorted: Vec<DirEntry>,
    listed: bool,
}

/// Scratch space for `getdents64`.
pub type DirBuf = Vec<u8>;

/// A fresh scratch buffer for [`CachedDir::list`].
pub fn dir_buf() -> DirBuf {
    Vec::with_capacity(32 * 1024)
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?)
}

impl CachedDir {
    /// The subdirectories of the last listing, sorted by name.
    pub fn entries(&self) -> &[DirEntry] {
        &self.sorted
    }

    /// Lists the subdirectories of `path` (names that are not UTF-8 are skipped) and returns
    /// true if they differ from the last listing. A watched directory without events since
    /// its last listing is not read again. Uses the held descriptor, else (or if that fails)
    /// opens `path`, keeping the descriptor if `budget` allows.
    pub fn list(
        &mut self,
        path: &Path,
        budget: &FdBudget,
        scratch: &mut DirBuf,
        watcher: &mut Watcher,
    ) -> io::Result<bool> {
        match self.wd {
            Some(wd) if self.listed && !watcher.changed(wd) => return Ok(false),
            // Watch first, so that a change during or after this listing queues an event.
            // (On the same inode, this returns the same watch.)
            _ => self.wd = watcher.watch(path),
        }
        let listed = self.list_now(path, budget, scratch);
        if listed.is_err() {
            // Listed again next time, whatever the events.
            self.listed = false;
        }
        listed
    }

    /// Forgets the watch (when the directory is no longer listed).
    pub fn unwatch(&mut self, watcher: &mut Watcher) {
        if let Some(wd) = self.wd.take() {
            watcher.unwatch(wd);
        }
    }

    fn list_now(
        &mut self,
        path: &Path,
        budget: &FdBudget,
        scratch: &mut DirBuf,
    ) -> io::Result<bool> {
        if let Some(h) = self.held.take() {
            let listed = rustix::fs::seek(&h.fd, rustix::fs::SeekFrom::Start(0))
                .map_err(io::Error::from)
                .and_then(|_| self.scan(&h.fd, scratch));
            // A removed directory (ENOENT from getdents), or anything else: start afresh.
            if let Ok(changed) = listed {
                self.held = Some(h);
                return Ok(changed);
            }
        }
        let fd = open_dir(path)?;
        let changed = self.scan(&fd, scratch)?;
        self.held = Held::new(fd, budget).ok();
        Ok(changed)
    }

    /// Reads every entry of `fd` (positioned at its start); returns true if the
    /// subdirectories changed.
    fn scan(&mut self, fd: &OwnedFd, scratch: &mut DirBuf) -> io::Result<bool> {
        if scratch.capacity() < 4096 {
            scratch.reserve(32 * 1024);
        }
        let mut same = self.listed;
        let mut i = 0;
        let mut fresh: Vec<DirEntry> = Vec::new();
        let mut it = RawDir::new(fd, scratch.spare_capacity_mut());
        while let Some(e) = it.next() {
            let e = e?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let is_dir = match e.file_type() {
                FileType::Directory => true,
                FileType::Unknown => {
                    rustix::fs::statat(fd, e.file_name(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
                }
                _ => false,
            };
            if !is_dir {
                continue;
            }
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            if same {
                match self.raw.get(i) {
                    Some(old) if old.ino == e.ino() && old.name == name => {
                        i += 1;
                        continue;
                    }
                    _ => {
                        same = false;
                        fresh.extend_from_slice(&self.raw[..i]);
                    }
                }
            }
            fresh.push(DirEntry {
                name: name.to_string(),
                ino: e.ino(),
            });
        }
        if same && i == self.raw.len() {
            return Ok(false);
        }
        if same {
            // A prefix of the old listing: entries were removed at the end.
            fresh.extend_from_slice(&self.raw[..i]);
        }
        self.listed = true;
        self.sorted = fresh.clone();
        self.sorted.sort_by(|a, b| a.name.cmp(&b.name));
        self.raw = fresh;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(std::path::PathBuf);
    impl Tmp {
        fn new(name: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "tidal-fdcache-{name}-{}-{:?}",
                std::process::id(),
                std::time::SystemTime::now()
            ));
            std::fs::create_dir_all(&p).expect("mkdir");
            Self(p)
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn cached_file_rereads_current_content_and_reopens_after_an_error() {
        let t = Tmp::new("file");
        let p = t.0.join("f");
        std::fs::write(&p, "1\n").expect("write");
        let budget = FdBudget::with_cap(4);
        let mut f = CachedFile::default();
        let mut buf = Vec::new();
        let n = f
            .read(|| p.clone(), &budget, true, true, &mut buf)
            .expect("read");
        assert_eq!(&buf[..n], b"1\n");
        assert!(f.is_held());
        assert_eq!(budget.held(), 1);
        std::fs::write(&p, "22\n").expect("rewrite in place");
        let n = f
            .read(|| p.clone(), &budget, true, true, &mut buf)
            .expect("read");
        assert_eq!(&buf[..n], b"22\n");
        // A file larger than one read.
        let big = "x".repeat(3 * READ_CAPACITY + 5);
        std::fs::write(&p, &big).expect("write");
        let n = f
            .read(|| p.clone(), &budget, true, true, &mut buf)
            .expect("read");
        assert_eq!(&buf[..n], big.as_bytes());
        drop(f);
        assert_eq!(budget.held(), 0, "returned on drop");
        // Missing file: the error a fresh open gives.
        let mut g = CachedFile::default();
        let e = g
            .read(|| t.0.join("absent"), &budget, true, true, &mut buf)
            .expect_err("missing");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(!g.is_held());
    }

    #[test]
    fn budget_caps_held_descriptors() {
        let t = Tmp::new("budget");
        let budget = FdBudget::with_cap(2);
        let mut buf = Vec::new();
        let mut files: Vec<CachedFile> = (0..3).map(|_| CachedFile::default()).collect();
        for (i, f) in files.iter_mut().enumerate() {
            let p = t.0.join(format!("f{i}"));
            std::fs::write(&p, format!("{i}\n")).expect("write");
            let n = f
                .read(|| p.clone(), &budget, true, true, &mut buf)
                .expect("read");
            assert_eq!(&buf[..n], format!("{i}\n").as_bytes());
        }
        assert_eq!(
            files.iter().map(CachedFile::is_held).collect::<Vec<_>>(),
            [true, true, false]
        );
        files[0].forget();
        assert_eq!(budget.held(), 1);
        let p = t.0.join("unheld");
        std::fs::write(&p, "x").expect("write");
        let mut once = CachedFile::default();
        once.read(|| p.clone(), &budget, false, true, &mut buf)
            .expect("read");
        assert!(!once.is_held(), "not to be held");
    }

    #[test]
    fn cached_dir_lists_subdirectories_and_sees_every_change() {
        let t = Tmp::new("dir");
        for d in ["b", "a", "c"] {
            std::fs::create_dir(t.0.join(d)).expect("mkdir");
        }
        std::fs::write(t.0.join("file"), "").expect("write");
        let budget = FdBudget::with_cap(2);
        let mut scratch = dir_buf();
        let mut w = Watcher::new();
        let mut d = CachedDir::default();
        let names = |d: &CachedDir| {
            d.entries()
                .iter()
                .map(|e| e.name.clone())
                .collect::<Vec<_>>()
        };
        w.drain();
        assert!(d.list(&t.0, &budget, &mut scratch, &mut w).expect("list"));
        assert_eq!(names(&d), ["a", "b", "c"]);
        assert!(
            !d.list(&t.0, &budget, &mut scratch, &mut w).expect("list"),
            "unchanged"
        );
        assert!(d.wd.is_some(), "watched: listed again only after an event");
        // Replaced under the same name: a new inode is a change. (A file held open inside
        // keeps the old directory's inode number from being reused, as the sampler's do.)
        std::fs::write(t.0.join("b/f"), "").expect("write");
        let held = File::open(t.0.join("b/f")).expect("open");
        std::fs::remove_file(t.0.join("b/f")).expect("rm");
        std::fs::remove_dir(t.0.join("b")).expect("rmdir");
        std::fs::create_dir(t.0.join("b")).expect("mkdir");
        w.drain();
        assert!(d.list(&t.0, &budget, &mut scratch, &mut w).expect("list"));
        assert_eq!(names(&d), ["a", "b", "c"]);
        drop(held);
        std::fs::remove_dir(t.0.join("c")).expect("rmdir");
        w.drain();
        assert!(d.list(&t.0, &budget, &mut scratch, &mut w).expect("list"));
        assert_eq!(names(&d), ["a", "b"]);
        std::fs::create_dir(t.0.join("d")).expect("mkdir");
        w.drain();
        assert!(d.list(&t.0, &budget, &mut scratch, &mut w).expect("list"));
        assert_eq!(names(&d), ["a", "b", "d"]);
        // The directory itself removed: the error a fresh listing gives. (A held directory's
        // own removal queues no event while it is held: the sampler sees it go from its
        // parent's listing, or, unwatched as here, from listing it.)
        let mut w = Watcher::disabled();
        let sub = t.0.join("a");
        let mut s = CachedDir::default();
        w.drain();
        s.list(&sub, &budget, &mut scratch, &mut w).expect("list");
        std::fs::remove_dir(&sub).expect("rmdir");
        w.drain();
        let e = s
            .list(&sub, &budget, &mut scratch, &mut w)
            .expect_err("gone");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
