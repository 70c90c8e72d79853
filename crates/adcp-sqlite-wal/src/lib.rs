//! A SQLite VFS that writes each transaction's write-ahead-log frames in one system call.
//!
//! ```
//! use rusqlite::{Connection, OpenFlags};
//!
//! let path = std::env::temp_dir().join(format!("adcp-sqlite-wal-doc-{}.db", std::process::id()));
//! let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
//! let vfs = adcp_sqlite_wal::register().expect("a default VFS to wrap");
//! let conn = Connection::open_with_flags_and_vfs(&path, flags, vfs)?;
//! conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v); INSERT INTO t VALUES (1);")?;
//! // Other connections, with any VFS, see what was committed.
//! let other = Connection::open(&path)?;
//! assert_eq!(other.query_row("SELECT v FROM t", [], |r| r.get::<_, i64>(0))?, 1);
//! # drop((conn, other));
//! # for suffix in ["", "-wal", "-shm"] { let _ = std::fs::remove_file(format!("{}{suffix}", path.display())); }
//! # Ok::<(), rusqlite::Error>(())
//! ```
//!
//! SQLite writes a frame of the write-ahead log as two `pwrite`s: its 24-byte header, then
//! the page. A frame is 24 bytes longer than a page, so the page straddles two of the file's
//! pages in the OS page cache: a commit of 15 frames made 30 system calls and 45 page-cache
//! updates. On the adcp-webhooks outbox's connection thread that was 6.5 `pwrite`s per
//! delivered webhook and a quarter of the thread's time. This VFS wraps the platform's default
//! one and changes only the log file: writes that follow each other in the file are gathered
//! in memory and reach the file in one write per 64 KiB once the transaction's last frame (the
//! one whose header carries the commit's database size) has been written, before SQLite
//! publishes the commit to other connections.
//!
//! Nothing waits in memory past a commit: the buffer also goes to the file before any read,
//! sync, truncation, size query or file control on the log, before a write somewhere else in
//! the file, and when it grows past 4 MiB. A crash with frames still gathered loses
//! only a transaction that had not committed, which SQLite's recovery ignores anyway. The
//! database file, the shared-memory index and everything else go straight to the default VFS.

use rusqlite::ffi;
use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

/// The VFS's registered name.
pub const NAME: &CStr = c"adcp-wal-batch";

/// Gathered bytes that go to the file without waiting for the commit.
const MAX_BUFFER: usize = 4 << 20;

/// The most bytes passed to the default VFS in one write (the Unix VFS writes at most
/// 128 KiB - 1 per call, and reports a longer write as a full disk).
const MAX_WRITE: usize = 64 << 10;

/// A WAL frame header's size; its bytes 4..8 hold the database size after a commit frame.
const FRAME_HEADER: usize = 24;

/// What this VFS keeps per log file, ahead of the default VFS's own file structure.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    gathered: *mut Gathered,
}

/// Bytes written to the log and not yet passed to the file.
struct Gathered {
    bytes: Vec<u8>,
    /// Where in the file `bytes` start.
    start: i64,
    /// The last write was a commit frame's header: its page completes the transaction.
    commit_next: bool,
}

/// Where the default VFS's file structure starts inside ours (8-byte aligned).
const REAL_OFFSET: usize = std::mem::size_of::<WalFile>().next_multiple_of(8);

/// Register the VFS (once per process) and return its name, to open connections with
/// (`Connection::open_with_flags_and_vfs`); `None` when SQLite has no default VFS to wrap
/// (open with the default then). The VFS is not made the default.
pub fn register() -> Option<&'static CStr> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find and sqlite3_vfs_register are thread-safe; the structure
        // registered is leaked, so it lives as long as the process, as SQLite requires.
        unsafe {
            let real = ffi::sqlite3_vfs_find(std::ptr::null());
            if real.is_null() {
                return false;
            }
            let mut vfs = *real;
            vfs.zName = NAME.as_ptr();
            vfs.pNext = std::ptr::null_mut();
            vfs.szOsFile = (REAL_OFFSET as c_int).saturating_add((*real).szOsFile);
            vfs.xOpen = Some(x_open);
            vfs.pAppData = real.cast();
            let vfs = Box::leak(Box::new(vfs));
            ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK
        }
    });
    ok.then_some(NAME)
}

/// The wrapped VFS, kept in our VFS's application data.
unsafe fn real_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: `register` stored the default VFS there.
    unsafe { (*vfs).pAppData.cast() }
}

/// The default VFS's file structure inside one of our log files.
unsafe fn real_file(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: a log file was allocated with `szOsFile` = REAL_OFFSET + the wrapped size.
    unsafe { file.cast::<u8>().add(REAL_OFFSET).cast() }
}

unsafe fn real_methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: only called on log files whose wrapped open succeeded.
    unsafe { &*(*real_file(file)).pMethods }
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes our VFS and a file structure of our `szOsFile` bytes.
    unsafe {
        let real = real_vfs(vfs);
        let Some(open) = (*real).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            // Everything but the log: the default VFS's structure is the file itself.
            return open(real, name, file, flags, out_flags);
        }
        (*file).pMethods = std::ptr::null();
        let rc = open(real, name, real_file(file), flags, out_flags);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let wal = file.cast::<WalFile>();
        (*wal).gathered = Box::into_raw(Box::new(Gathered {
            bytes: Vec::new(),
            start: 0,
            commit_next: false,
        }));
        (*file).pMethods = &WAL_METHODS;
        ffi::SQLITE_OK
    }
}

unsafe fn gathered<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Gathered {
    // SAFETY: set by x_open for every log file, freed only by x_close.
    unsafe { &mut *(*file.cast::<WalFile>()).gathered }
}

/// Pass the gathered bytes to the file.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is an open log file.
    unsafe {
        let g = gathered(file);
        g.commit_next = false;
        if g.bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let Some(write) = real_methods(file).xWrite else {
            g.bytes.clear();
            return ffi::SQLITE_IOERR_WRITE;
        };
        let mut rc = ffi::SQLITE_OK;
        let mut at = g.start;
        for chunk in g.bytes.chunks(MAX_WRITE) {
            // `chunk.len()` <= MAX_WRITE, which fits a c_int.
            rc = write(
                real_file(file),
                chunk.as_ptr().cast(),
                chunk.len() as c_int,
                at,
            );
            if rc != ffi::SQLITE_OK {
                break;
            }
            at += chunk.len() as i64;
        }
        g.bytes.clear();
        rc
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite passes `amount` readable bytes at `data`.
    unsafe {
        let Ok(len) = usize::try_from(amount) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
        let g = gathered(file);
        if !g.bytes.is_empty() && offset != g.start.saturating_add(g.bytes.len() as i64) {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let g = gathered(file);
        if g.bytes.is_empty() {
            g.start = offset;
        }
        g.bytes.extend_from_slice(bytes);
        if len == FRAME_HEADER {
            // A frame header; a non-zero database size marks the commit frame, whose page
            // is the transaction's last write.
            g.commit_next = bytes[4..8] != [0, 0, 0, 0];
            return ffi::SQLITE_OK;
        }
        if g.commit_next || g.bytes.len() >= MAX_BUFFER {
            return flush(file);
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: the last call SQLite makes on the file; the buffer is freed here only.
    unsafe {
        let flushed = flush(file);
        let closed = match real_methods(file).xClose {
            Some(close) => close(real_file(file)),
            None => ffi::SQLITE_OK,
        };
        let wal = file.cast::<WalFile>();
        drop(Box::from_raw((*wal).gathered));
        (*wal).gathered = std::ptr::null_mut();
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

/// Forward a method to the default VFS's file after passing on what was gathered.
macro_rules! after_flush {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*), $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: `file` is an open log file; the arguments are SQLite's, passed on.
            unsafe {
                let rc = flush(file);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                match real_methods(file).$method {
                    Some(f) => f(real_file(file) $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

/// Forward a method to the default VFS's file as is.
macro_rules! forward {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*), $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            // SAFETY: `file` is an open log file; the arguments are SQLite's, passed on.
            unsafe {
                match real_methods(file).$method {
                    Some(f) => f(real_file(file) $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

after_flush!(x_read, xRead, (data: *mut c_void, amount: c_int, offset: ffi::sqlite3_int64), ffi::SQLITE_IOERR_READ);
after_flush!(x_truncate, xTruncate, (size: ffi::sqlite3_int64), ffi::SQLITE_IOERR_TRUNCATE);
after_flush!(x_sync, xSync, (flags: c_int), ffi::SQLITE_IOERR_FSYNC);
after_flush!(x_file_size, xFileSize, (size: *mut ffi::sqlite3_int64), ffi::SQLITE_IOERR_FSTAT);
after_flush!(x_file_control, xFileControl, (op: c_int, arg: *mut c_void), ffi::SQLITE_NOTFOUND);
forward!(x_lock, xLock, (level: c_int), c_int, ffi::SQLITE_OK);
forward!(x_unlock, xUnlock, (level: c_int), c_int, ffi::SQLITE_OK);
forward!(x_check_reserved_lock, xCheckReservedLock, (out: *mut c_int), c_int, ffi::SQLITE_OK);
forward!(x_sector_size, xSectorSize, (), c_int, 4096);
forward!(
    x_device_characteristics,
    xDeviceCharacteristics,
    (),
    c_int,
    0
);
forward!(x_shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void), c_int, ffi::SQLITE_IOERR_SHMMAP);
forward!(x_shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int), c_int, ffi::SQLITE_IOERR_SHMLOCK);
forward!(x_shm_unmap, xShmUnmap, (delete: c_int), c_int, ffi::SQLITE_OK);
forward!(x_fetch, xFetch, (offset: ffi::sqlite3_int64, amount: c_int, out: *mut *mut c_void), c_int, {
    *out = std::ptr::null_mut();
    ffi::SQLITE_OK
});
forward!(x_unfetch, xUnfetch, (offset: ffi::sqlite3_int64, page: *mut c_void), c_int, ffi::SQLITE_OK);

unsafe extern "C" fn x_shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: `file` is an open log file.
    unsafe {
        if let Some(f) = real_methods(file).xShmBarrier {
            f(real_file(file));
        }
    }
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: Some(x_fetch),
    xUnfetch: Some(x_unfetch),
};
