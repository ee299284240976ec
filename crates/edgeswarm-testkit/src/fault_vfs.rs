//! A fault-injecting SQLite VFS for tests: it wraps the default VFS (`unix`) of libSQL's
//! bundled SQLite, passes every call through, and on request fails `xWrite`, `xSync`,
//! `xTruncate` or `xFileSize` at the Nth call, or refuses writes that would grow a file
//! past a size cap (a full disk).
//!
//! Built the way SQLite's own test VFSes are (`src/test_vfs.c`, `src/test_devsym.c`):
//! our `sqlite3_file` is a header followed by the real file of the parent VFS
//! (`szOsFile` = header + parent's), `xOpen` opens the real file in place and installs
//! our method table only if the parent installed one (SQLite then calls `xClose` on
//! it), and the method table's `iVersion` is the real file's, so SQLite never calls a
//! shared-memory or mmap method the real file lacks.
//!
//! Each [`FaultVfs::register`] registers a VFS under a fresh name (tests run in
//! parallel threads; each gets its own counters). Open a store through it with
//! `StoreConfig { vfs: Some(vfs.name().into()), .. }`; anything else in the process
//! keeps the default VFS. A registered VFS stays registered for the life of the process
//! (SQLite keeps a pointer to it): a few hundred bytes per test.
//!
//! Counting: calls are counted per file kind (main database, WAL, rollback journal,
//! other) and per operation, from the moment a fault is armed. [`FaultVfs::calls`]
//! reads the counters, so a test can measure how many calls a workload makes (arm
//! nothing, reset, run, read) and then sweep N over that range.

use libsql::ffi;
use std::ffi::{c_char, c_int, c_void, CString};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Which file of a database a call is made on (from the `SQLITE_OPEN_*` kind flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// The database file itself (`SQLITE_OPEN_MAIN_DB`).
    MainDb = 0,
    /// The write-ahead log (`SQLITE_OPEN_WAL`).
    Wal = 1,
    /// The rollback journal (`SQLITE_OPEN_MAIN_JOURNAL`); unused in WAL mode.
    Journal = 2,
    /// Anything else: temp databases, statement and super journals.
    Other = 3,
}

impl FileKind {
    /// Every kind, in counter order.
    pub const ALL: [FileKind; 4] = [FileKind::MainDb, FileKind::Wal, FileKind::Journal, FileKind::Other];

    fn from_flags(flags: c_int) -> FileKind {
        if flags & ffi::SQLITE_OPEN_MAIN_DB != 0 {
            FileKind::MainDb
        } else if flags & ffi::SQLITE_OPEN_WAL != 0 {
            FileKind::Wal
        } else if flags & ffi::SQLITE_OPEN_MAIN_JOURNAL != 0 {
            FileKind::Journal
        } else {
            FileKind::Other
        }
    }
}

/// The file operations a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoOp {
    /// `xWrite`.
    Write = 0,
    /// `xSync` (fsync / fdatasync).
    Sync = 1,
    /// `xTruncate`.
    Truncate = 2,
    /// `xFileSize` (fstat).
    FileSize = 3,
}

impl IoOp {
    /// Every operation, in counter order.
    pub const ALL: [IoOp; 4] = [IoOp::Write, IoOp::Sync, IoOp::Truncate, IoOp::FileSize];

    /// The extended I/O error the unix VFS reports for a failure of this operation.
    fn ioerr(self) -> c_int {
        match self {
            IoOp::Write => ffi::SQLITE_IOERR_WRITE,
            IoOp::Sync => ffi::SQLITE_IOERR_FSYNC,
            IoOp::Truncate => ffi::SQLITE_IOERR_TRUNCATE,
            IoOp::FileSize => ffi::SQLITE_IOERR_FSTAT,
        }
    }
}

/// What an injected failure returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultCode {
    /// `SQLITE_FULL` (13): no space left on the device.
    Full,
    /// The operation's `SQLITE_IOERR_*` code (write 778, fsync 1034, truncate 1546,
    /// fstat 1802): the device refused the call.
    IoErr,
}

impl FaultCode {
    /// The SQLite primary result code a caller sees (13 or 10).
    pub fn primary(self) -> i32 {
        match self {
            FaultCode::Full => ffi::SQLITE_FULL,
            FaultCode::IoErr => ffi::SQLITE_IOERR,
        }
    }
}

/// One armed fault: fail the `nth` call of `op` on files of `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Which file's calls count.
    pub kind: FileKind,
    /// Which operation's calls count.
    pub op: IoOp,
    /// The call that fails, counted from 1 since the fault was armed.
    pub nth: u64,
    /// What the failing call returns.
    pub code: FaultCode,
    /// Fail every later call too (a device gone bad) until [`FaultVfs::disarm`];
    /// otherwise only the `nth` call fails (a transient error).
    pub persistent: bool,
}

/// The state one registered VFS shares between every thread that uses it.
struct Shared {
    /// The VFS we pass calls to (the default one at registration).
    parent: *mut ffi::sqlite3_vfs,
    /// Counters, the armed fault and the size cap.
    inner: Mutex<Inner>,
}

// SAFETY: `parent` points at a VFS SQLite keeps registered for the life of the process
// (the default VFS is never unregistered by edgeswarm); its methods are thread-safe (the
// unix VFS serves every connection of a SERIALIZED build). Everything else is behind
// the mutex.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

#[derive(Default)]
struct Inner {
    /// Calls per `[kind][op]` since the last reset or arm.
    calls: [[u64; 4]; 4],
    /// The fault to inject, if any.
    fault: Option<Fault>,
    /// How many calls the armed faults failed (kept across disarm, reset by `arm`).
    fired: u64,
    /// Refuse (`SQLITE_FULL`) any write that would grow a file past this many bytes.
    cap: Option<u64>,
    /// Writes refused by the cap.
    cap_refusals: u64,
}

/// A registered fault-injecting VFS. Cheap to share (`&'static` state); dropping it
/// leaves the VFS registered and pass-through.
#[derive(Clone, Copy)]
pub struct FaultVfs {
    /// The name it is registered under (`edgeswarm-fault-<n>`).
    name: &'static str,
    /// Its shared state (leaked: SQLite holds a pointer to it for good).
    shared: &'static Shared,
}

impl std::fmt::Debug for FaultVfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultVfs").field("name", &self.name).finish()
    }
}

/// Numbers the VFSes registered by this process.
static NEXT: AtomicUsize = AtomicUsize::new(1);

/// Our per-file header; the parent's file follows it in the same allocation.
#[repr(C)]
struct FaultFile {
    /// SQLite's base class: must be first.
    base: ffi::sqlite3_file,
    /// The parent VFS's file (right after this header).
    real: *mut ffi::sqlite3_file,
    /// The VFS state (counters, fault, cap).
    shared: *const Shared,
    /// Which kind of file this is, for the counters.
    kind: usize,
}

impl FaultVfs {
    /// Registers a new fault VFS wrapping the current default VFS (not as the default).
    /// Panics if SQLite refuses (a test setup failure).
    pub fn register() -> FaultVfs {
        ensure_libsql_initialized();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name: &'static str = Box::leak(format!("edgeswarm-fault-{n}").into_boxed_str());
        // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS (never freed).
        let parent = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
        assert!(!parent.is_null(), "SQLite has no default VFS");
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            parent,
            inner: Mutex::new(Inner::default()),
        }));
        let cname: &'static CString = Box::leak(Box::new(CString::new(name).unwrap_or_default()));
        // SAFETY: `parent` is valid (above); we copy its scalar fields.
        let p = unsafe { &*parent };
        let vfs = Box::leak(Box::new(ffi::sqlite3_vfs {
            iVersion: p.iVersion.min(3),
            szOsFile: (std::mem::size_of::<FaultFile>() as c_int) + p.szOsFile,
            mxPathname: p.mxPathname,
            pNext: std::ptr::null_mut(),
            zName: cname.as_ptr(),
            pAppData: shared as *const Shared as *mut c_void,
            xOpen: Some(v_open),
            xDelete: Some(v_delete),
            xAccess: Some(v_access),
            xFullPathname: Some(v_full_pathname),
            xDlOpen: Some(v_dl_open),
            xDlError: Some(v_dl_error),
            xDlSym: Some(v_dl_sym),
            xDlClose: Some(v_dl_close),
            xRandomness: Some(v_randomness),
            xSleep: Some(v_sleep),
            xCurrentTime: Some(v_current_time),
            xGetLastError: Some(v_get_last_error),
            xCurrentTimeInt64: Some(v_current_time_i64),
            xSetSystemCall: Some(v_set_system_call),
            xGetSystemCall: Some(v_get_system_call),
            xNextSystemCall: Some(v_next_system_call),
        }));
        // SAFETY: `vfs` is leaked, so it outlives its registration.
        let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
        assert_eq!(rc, ffi::SQLITE_OK, "sqlite3_vfs_register({name}) failed");
        FaultVfs { name, shared }
    }

    /// The name to open databases with (`StoreConfig::vfs`, or `?vfs=` in a URI).
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(self.shared)
    }

    /// Arms `fault` (replacing any armed one) and resets every counter, so `nth`
    /// counts from now.
    pub fn arm(&self, fault: Fault) {
        let mut i = self.inner();
        i.calls = Default::default();
        i.fault = Some(fault);
        i.fired = 0;
    }

    /// Clears the armed fault: every call passes through again.
    pub fn disarm(&self) {
        self.inner().fault = None;
    }

    /// How many calls the armed fault failed since it was armed.
    pub fn fired(&self) -> u64 {
        self.inner().fired
    }

    /// Zeroes the call counters (to measure a workload).
    pub fn reset_calls(&self) {
        self.inner().calls = Default::default();
    }

    /// Calls of `op` on files of `kind` since the last reset or arm.
    pub fn calls(&self, kind: FileKind, op: IoOp) -> u64 {
        self.inner().calls[kind as usize][op as usize]
    }

    /// Caps every file opened through this VFS at `bytes` (`None` lifts the cap): a
    /// write that would grow a file past it fails with `SQLITE_FULL`, as on a full
    /// disk; writes inside the current size still succeed.
    pub fn set_size_cap(&self, bytes: Option<u64>) {
        self.inner().cap = bytes;
    }

    /// Writes the size cap refused so far.
    pub fn cap_refusals(&self) -> u64 {
        self.inner().cap_refusals
    }
}

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    // A panic never happens while the lock is held (no code in it can panic), but never
    // unwind across FFI because of a poisoned lock either.
    s.inner.lock().unwrap_or_else(|e| e.into_inner())
}

/// libsql asserts SQLite's threading mode on its first open, which must come before
/// `sqlite3_initialize` (registering a VFS initializes SQLite): open an in-memory
/// database through libsql first.
fn ensure_libsql_initialized() {
    let fut = libsql::Builder::new_local(":memory:").build();
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    // A local build never waits: the first poll completes it.
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => {
            if let Err(e) = r {
                panic!("libsql cannot open an in-memory database: {e}");
            }
        }
        std::task::Poll::Pending => panic!("libsql's local build unexpectedly waited"),
    }
}

/// Counts a call and decides whether it fails: `Some(rc)` to return `rc` instead of
/// passing the call through.
fn check(s: &Shared, kind: usize, op: IoOp) -> Option<c_int> {
    let mut i = lock(s);
    let n = {
        let c = &mut i.calls[kind][op as usize];
        *c += 1;
        *c
    };
    let f = i.fault?;
    if f.kind as usize != kind || f.op != op {
        return None;
    }
    if n == f.nth || (f.persistent && n > f.nth) {
        i.fired += 1;
        return Some(match f.code {
            FaultCode::Full => ffi::SQLITE_FULL,
            FaultCode::IoErr => op.ioerr(),
        });
    }
    None
}

// ---- the VFS's methods: ours for xOpen, the parent's for the rest ------------------

unsafe fn shared_of(vfs: *mut ffi::sqlite3_vfs) -> &'static Shared {
    // SAFETY (callers): `vfs` is one of ours; pAppData is the leaked `Shared`.
    unsafe { &*((*vfs).pAppData as *const Shared) }
}

unsafe fn parent_of(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    unsafe { shared_of(vfs).parent }
}

unsafe extern "C" fn v_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite hands us `szOsFile` bytes at `file` (8-byte aligned); the header is
    // ours, the parent's file starts right after it.
    unsafe {
        let shared = shared_of(vfs);
        let parent = shared.parent;
        let ff = file as *mut FaultFile;
        let real = (file as *mut u8).add(std::mem::size_of::<FaultFile>()) as *mut ffi::sqlite3_file;
        std::ptr::write_bytes(file as *mut u8, 0, std::mem::size_of::<FaultFile>());
        (*ff).real = real;
        (*ff).shared = shared;
        (*ff).kind = FileKind::from_flags(flags) as usize;
        (*real).pMethods = std::ptr::null();
        let Some(open) = (*parent).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        let rc = open(parent, name, real, flags, out_flags);
        if !(*real).pMethods.is_null() {
            (*ff).base.pMethods = methods_for((*(*real).pMethods).iVersion);
        }
        rc
    }
}

unsafe extern "C" fn v_delete(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, sync_dir: c_int) -> c_int {
    unsafe {
        let p = parent_of(vfs);
        match (*p).xDelete {
            Some(f) => f(p, name, sync_dir),
            None => ffi::SQLITE_IOERR_DELETE,
        }
    }
}

unsafe extern "C" fn v_access(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, flags: c_int, out: *mut c_int) -> c_int {
    unsafe {
        let p = parent_of(vfs);
        match (*p).xAccess {
            Some(f) => f(p, name, flags, out),
            None => ffi::SQLITE_IOERR_ACCESS,
        }
    }
}

unsafe extern "C" fn v_full_pathname(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, n: c_int, out: *mut c_char) -> c_int {
    unsafe {
        let p = parent_of(vfs);
        match (*p).xFullPathname {
            Some(f) => f(p, name, n, out),
            None => ffi::SQLITE_CANTOPEN,
        }
    }
}

unsafe extern "C" fn v_dl_open(vfs: *mut ffi::sqlite3_vfs, name: *const c_char) -> *mut c_void {
    unsafe {
        let p = parent_of(vfs);
        match (*p).xDlOpen {
            Some(f) => f(p, name),
            None => std::ptr::null_mut(),
        }
    }
}

unsafe extern "C" fn v_dl_error(vfs: *mut ffi::sqlite3_vfs, n: c_int, msg: *mut c_char) {
    unsafe {
        let p = parent_of(vfs);
        if let Some(f) = (*p).xDlError {
            f(p, n, msg)
        }
    }
}

type DlSym = Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)>;

unsafe extern "C" fn v_dl_sym(vfs: *mut ffi::sqlite3_vfs, h: *mut c_void, sym: *const c_char) -> DlSym {
    unsafe {
        let p = parent_of(vfs);
        match (*p).xDlSym {
            Some(f) => f(p, h, sym),
            None => None,
        }
    }
}

unsafe extern "C" fn v_dl_close(vfs: *mut ffi::sqlite3_vfs, h: *mut c_void) {
    unsafe {
        let p = parent_of(vfs);
        if let Some(f) = (*p).xDlClose {
            f(p, h)
        }
    }
}

unsafe extern "C" fn v_randomness(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    unsafe {
        let p = parent_of(vfs);
        match (*p).xRandomness {
            Some(f) => f(p, n, out),
            None => 0,
        }
    }
}

unsafe extern "C" fn v_sleep(vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    unsafe {
        let p = parent_of(vfs);
        match (*p).xSleep {
            Some(f) => f(p, micros),
            None => 0,
        }
    }
}

unsafe extern "C" fn v_current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    unsafe {
        let p = parent_of(vfs);
        match (*p).xCurrentTime {
            Some(f) => f(p, out),
            None => ffi::SQLITE_ERROR,
        }
    }
}

unsafe extern "C" fn v_get_last_error(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    unsafe {
        let p = parent_of(vfs);
        match (*p).xGetLastError {
            Some(f) => f(p, n, out),
            None => 0,
        }
    }
}

unsafe extern "C" fn v_current_time_i64(vfs: *mut ffi::sqlite3_vfs, out: *mut ffi::sqlite3_int64) -> c_int {
    unsafe {
        let p = parent_of(vfs);
        match (*p).xCurrentTimeInt64 {
            Some(f) if (*p).iVersion >= 2 => f(p, out),
            _ => ffi::SQLITE_ERROR,
        }
    }
}

unsafe extern "C" fn v_set_system_call(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, call: ffi::sqlite3_syscall_ptr) -> c_int {
    unsafe {
        let p = parent_of(vfs);
        match (*p).xSetSystemCall {
            Some(f) if (*p).iVersion >= 3 => f(p, name, call),
            _ => ffi::SQLITE_NOTFOUND,
        }
    }
}

unsafe extern "C" fn v_get_system_call(vfs: *mut ffi::sqlite3_vfs, name: *const c_char) -> ffi::sqlite3_syscall_ptr {
    unsafe {
        let p = parent_of(vfs);
        match (*p).xGetSystemCall {
            Some(f) if (*p).iVersion >= 3 => f(p, name),
            _ => None,
        }
    }
}

unsafe extern "C" fn v_next_system_call(vfs: *mut ffi::sqlite3_vfs, name: *const c_char) -> *const c_char {
    unsafe {
        let p = parent_of(vfs);
        match (*p).xNextSystemCall {
            Some(f) if (*p).iVersion >= 3 => f(p, name),
            _ => std::ptr::null(),
        }
    }
}

// ---- the file's methods ---------------------------------------------------------------

/// Our header and the real file behind a `sqlite3_file` SQLite hands back.
unsafe fn parts(file: *mut ffi::sqlite3_file) -> (&'static Shared, usize, *mut ffi::sqlite3_file) {
    // SAFETY (callers): `file` was opened by `v_open`, which filled the header.
    unsafe {
        let ff = file as *mut FaultFile;
        (&*(*ff).shared, (*ff).kind, (*ff).real)
    }
}

/// The real file's method table.
unsafe fn rm(real: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY (callers): a file we installed methods on has a real file with methods.
    unsafe { &*(*real).pMethods }
}

macro_rules! pass {
    ($real:expr, $m:ident $(, $a:expr)*) => {
        match rm($real).$m {
            Some(f) => f($real $(, $a)*),
            None => ffi::SQLITE_IOERR,
        }
    };
}

unsafe extern "C" fn f_close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let (_, _, real) = parts(file);
        let rc = pass!(real, xClose);
        (*file).pMethods = std::ptr::null();
        rc
    }
}

unsafe extern "C" fn f_read(file: *mut ffi::sqlite3_file, buf: *mut c_void, amt: c_int, ofst: ffi::sqlite3_int64) -> c_int {
    unsafe {
        let (_, _, real) = parts(file);
        pass!(real, xRead, buf, amt, ofst)
    }
}

unsafe extern "C" fn f_write(file: *mut ffi::sqlite3_file, buf: *const c_void, amt: c_int, ofst: ffi::sqlite3_int64) -> c_int {
    unsafe {
        let (s, kind, real) = parts(file);
        if let Some(rc) = check(s, kind, IoOp::Write) {
            return rc;
        }
        let cap = lock(s).cap;
        if let Some(cap) = cap {
            let end = (ofst as u64).saturating_add(amt.max(0) as u64);
            if end > cap {
                let mut size: ffi::sqlite3_int64 = 0;
                let rc = pass!(real, xFileSize, &mut size);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                if end > size.max(0) as u64 {
                    lock(s).cap_refusals += 1;
                    return ffi::SQLITE_FULL;
                }
            }
        }
        pass!(real, xWrite, buf, amt, ofst)
    }
}

unsafe extern "C" fn f_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    unsafe {
        let (s, kind, real) = parts(file);
        if let Some(rc) = check(s, kind, IoOp::Truncate) {
            return rc;
        }
        pass!(real, xTruncate, size)
    }
}

unsafe extern "C" fn f_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    unsafe {
        let (s, kind, real) = parts(file);
        if let Some(rc) = check(s, kind, IoOp::Sync) {
            return rc;
        }
        pass!(real, xSync, flags)
    }
}

unsafe extern "C" fn f_file_size(file: *mut ffi::sqlite3_file, out: *mut ffi::sqlite3_int64) -> c_int {
    unsafe {
        let (s, kind, real) = parts(file);
        if let Some(rc) = check(s, kind, IoOp::FileSize) {
            return rc;
        }
        pass!(real, xFileSize, out)
    }
}

unsafe extern "C" fn f_lock(file: *mut ffi::sqlite3_file, lock: c_int) -> c_int {
    unsafe {
        let (_, _, real) = parts(file);
        pass!(real, xLock, lock)
    }
}

unsafe extern "C" fn f_unlock(file: *mut ffi::sqlite3_file, lock: c_int) -> c_int {
    unsafe {
        let (_, _, real) = parts(file);
        pass!(real, xUnlock, lock)
    }
}

unsafe extern "C" fn f_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    unsafe {
        let (_, _, real) = parts(file);
        pass!(real, xCheckReservedLock, out)
    }
}

unsafe extern "C" fn f_file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    unsafe {
        let (_, _, real) = parts(file);
        match rm(real).xFileControl {
            Some(f) => f(real, op, arg),
            None => ffi::SQLITE_NOTFOUND,
        }
    }
}

unsafe extern "C" fn f_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let (_, _, real) = parts(file);
        match rm(real).xSectorSize {
            Some(f) => f(real),
            None => 4096,
        }
    }
}

unsafe extern "C" fn f_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let (_, _, real) = parts(file);
        match rm(real).xDeviceCharacteristics {
            Some(f) => f(real),
            None => 0,
        }
    }
}

unsafe extern "C" fn f_shm_map(file: *mut ffi::sqlite3_file, page: c_int, size: c_int, extend: c_int, pp: *mut *mut c_void) -> c_int {
    unsafe {
        let (_, _, real) = parts(file);
        pass!(real, xShmMap, page, size, extend, pp)
    }
}

unsafe extern "C" fn f_shm_lock(file: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    unsafe {
        let (_, _, real) = parts(file);
        pass!(real, xShmLock, offset, n, flags)
    }
}

unsafe extern "C" fn f_shm_barrier(file: *mut ffi::sqlite3_file) {
    unsafe {
        let (_, _, real) = parts(file);
        if let Some(f) = rm(real).xShmBarrier {
            f(real)
        }
    }
}

unsafe extern "C" fn f_shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    unsafe {
        let (_, _, real) = parts(file);
        pass!(real, xShmUnmap, delete)
    }
}

unsafe extern "C" fn f_fetch(file: *mut ffi::sqlite3_file, ofst: ffi::sqlite3_int64, amt: c_int, pp: *mut *mut c_void) -> c_int {
    unsafe {
        let (_, _, real) = parts(file);
        pass!(real, xFetch, ofst, amt, pp)
    }
}

unsafe extern "C" fn f_unfetch(file: *mut ffi::sqlite3_file, ofst: ffi::sqlite3_int64, p: *mut c_void) -> c_int {
    unsafe {
        let (_, _, real) = parts(file);
        pass!(real, xUnfetch, ofst, p)
    }
}

const fn methods(version: c_int) -> ffi::sqlite3_io_methods {
    ffi::sqlite3_io_methods {
        iVersion: version,
        xClose: Some(f_close),
        xRead: Some(f_read),
        xWrite: Some(f_write),
        xTruncate: Some(f_truncate),
        xSync: Some(f_sync),
        xFileSize: Some(f_file_size),
        xLock: Some(f_lock),
        xUnlock: Some(f_unlock),
        xCheckReservedLock: Some(f_check_reserved_lock),
        xFileControl: Some(f_file_control),
        xSectorSize: Some(f_sector_size),
        xDeviceCharacteristics: Some(f_device_characteristics),
        xShmMap: Some(f_shm_map),
        xShmLock: Some(f_shm_lock),
        xShmBarrier: Some(f_shm_barrier),
        xShmUnmap: Some(f_shm_unmap),
        xFetch: Some(f_fetch),
        xUnfetch: Some(f_unfetch),
    }
}

/// One method table per io-methods version, so SQLite calls only what the real file has.
static METHODS: [ffi::sqlite3_io_methods; 3] = [methods(1), methods(2), methods(3)];

fn methods_for(version: c_int) -> *const ffi::sqlite3_io_methods {
    &METHODS[(version.clamp(1, 3) - 1) as usize]
}
