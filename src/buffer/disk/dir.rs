//! The buffer directory itself: its lock, the writability probe at start-up, and the fsync
//! that makes created, renamed and removed entries durable, with what differs between unix
//! and Windows. Not here: the files the buffer keeps in it ([`super::format`]) and when they
//! are written (the queue, [`super`]).
//!
//! # The lock
//!
//! [`super::DiskBuffer::open`] takes an exclusive OS advisory lock on `lock` ([`File::try_lock`]:
//! `flock` on Linux, `LockFileEx` on Windows) before it reads or writes anything else, holds
//! it for the buffer's life and writes its pid to `lock.pid`. A second opener of the same
//! directory, in another process or this one, fails with [`BufferError::Locked`] naming the
//! directory and the pid it reads from `lock.pid` (which, for a holder that is just starting,
//! may be missing or a previous holder's); it changes nothing on disk. The lock goes with the
//! handle, so an agent that crashed or was killed leaves the files but not the lock: the next
//! start takes it over. The lock is per directory: one buffer per destination, each in its
//! own directory, do not block each other. Neither file is ever deleted (deleting a lock file
//! lets two processes lock two different files of one name). On a file system without locks
//! the buffer opens unguarded, with a warning. Windows refuses to read a locked file, which is
//! why the pid is in a file of its own.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use tracing::warn;

use crate::buffer::BufferError;

const PROBE: &str = ".write-probe";
/// Locked (an OS advisory lock) by the process using the directory; its contents are unused.
pub(super) const LOCK: &str = "lock";
/// The pid of the process holding [`LOCK`], as text, for the error the next one reports.
pub(super) const LOCK_PID: &str = "lock.pid";

/// Takes the exclusive lock on `dir` (see the module docs) and records this process's pid
/// beside it. Fails with [`BufferError::Locked`] when another handle holds it.
pub(super) fn lock_dir(dir: &Path) -> Result<Option<File>, BufferError> {
    let not_writable = |source| BufferError::NotWritable {
        path: dir.to_path_buf(),
        source,
    };
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(not_writable)?;
    // A lock this very process recorded can only be held by a copy of our descriptor: a
    // child forked a moment ago keeps copies of every descriptor until its exec closes them
    // (flock locks belong to the open file, not to the process). The agent forks nothing, but
    // a process that embeds it, or runs its tests, may: wait for that exec, up to 2 s.
    let mut own_waits = 0;
    let locked = loop {
        match file.try_lock() {
            Err(fs::TryLockError::WouldBlock)
                if cfg!(unix)
                    && own_waits < 200
                    && lock_holder(dir) == Some(std::process::id()) =>
            {
                own_waits += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other,
        }
    };
    match locked {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(BufferError::Locked {
                path: dir.to_path_buf(),
                pid: lock_holder(dir),
            })
        }
        // A filesystem without locks: the buffer still works, unguarded.
        Err(fs::TryLockError::Error(error)) if error.kind() == io::ErrorKind::Unsupported => {
            warn!(file = %path.display(), %error, "cannot lock the buffer directory; make sure no other agent uses it");
            return Ok(None);
        }
        Err(fs::TryLockError::Error(source)) => return Err(BufferError::io(&path, source)),
    }
    fs::write(dir.join(LOCK_PID), format!("{}\n", std::process::id())).map_err(not_writable)?;
    Ok(Some(file))
}

/// The pid the holder of the lock recorded, if it is readable. A holder that has just taken
/// the lock may not have written it yet: then this is a previous holder's, or nothing.
fn lock_holder(dir: &Path) -> Option<u32> {
    fs::read_to_string(dir.join(LOCK_PID))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Creates, fsyncs and removes a small file and fsyncs the directory, so a directory the
/// buffer could not use fails at start-up rather than on the first push or ack.
pub(super) fn probe(dir: &Path) -> io::Result<()> {
    let path = dir.join(PROBE);
    let mut f = File::create(&path)?;
    f.write_all(b"probe")?;
    f.sync_all()?;
    drop(f);
    fs::remove_file(&path)?;
    sync_dir(dir)
}

/// Makes created, renamed and removed directory entries durable.
#[cfg(unix)]
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Windows has no directory fsync; NTFS journals its metadata.
#[cfg(not(unix))]
pub(super) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}
