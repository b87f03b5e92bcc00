//! Local sources (`file://`, when allowed): only a regular file outside the
//! kernel's own file systems, opened so that a FIFO cannot block, read on a
//! blocking thread into the writer's channel.

use std::io::{self, Read, Seek};
use std::path::Path;

use tokio::sync::mpsc;

use super::FetchError;
use super::disk::{BLOCK, Buffers};
use crate::files::budget::Budget;

/// Where no local source may be read from: the kernel's views of
/// processes and devices, which hold secrets (`/proc/self/environ`) or
/// never end (`/dev/zero`).
const REFUSED_ROOTS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Opens a local source for reading: a regular file only, never in the
/// kernel's own file systems, and opened so that a FIFO put there between
/// the check and the open cannot block.
pub(super) fn open_local(path: &Path) -> Result<std::fs::File, FetchError> {
    use std::os::unix::fs::OpenOptionsExt;
    let refused = || {
        FetchError::Fatal(format!(
            "file sources must be regular files outside {}; {} is not one",
            REFUSED_ROOTS.join(", "),
            path.display()
        ))
    };
    let real = std::fs::canonicalize(path)
        .map_err(|e| FetchError::Fatal(format!("cannot read {}: {e}", path.display())))?;
    if REFUSED_ROOTS.iter().any(|root| real.starts_with(root)) {
        return Err(refused());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&real)
        .map_err(|e| FetchError::Fatal(format!("cannot read {}: {e}", path.display())))?;
    let meta = file
        .metadata()
        .map_err(|e| FetchError::Fatal(e.to_string()))?;
    if !meta.is_file() || kernel_file_system(&file) {
        return Err(refused());
    }
    Ok(file)
}

/// Whether `file` lives on procfs, sysfs or another of the kernel's own
/// file systems (mounted anywhere, under another name too).
fn kernel_file_system(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    const KERNEL: [i64; 9] = [
        0x9fa0,      // proc
        0x6265_6572, // sysfs
        0x1cd1,      // devpts
        0x6462_6720, // debugfs
        0x7472_6163, // tracefs
        0x7363_6673, // securityfs
        0x0027_e0eb, // cgroup
        0x6367_7270, // cgroup2
        0xcafe_4a11, // bpf
    ];
    // SAFETY: fstatfs writes into the zeroed struct it is given and only
    // reads the descriptor, which `file` keeps open.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut stat) } != 0 {
        return true;
    }
    #[allow(clippy::unnecessary_cast)]
    KERNEL.contains(&(stat.f_type as i64))
}

/// The reading thread of a local source.
pub(super) fn read_local(
    mut file: std::fs::File,
    from: u64,
    feed: mpsc::Sender<Vec<u8>>,
    mut buffers: Buffers,
    budget: &Budget,
) -> Result<(), FetchError> {
    file.seek(io::SeekFrom::Start(from))
        .map_err(|e| FetchError::Fatal(format!("cannot read the file source: {e}")))?;
    loop {
        if budget.check().is_err() {
            return Ok(());
        }
        let Some(mut buf) = buffers.next_blocking() else {
            return Ok(()); // the writer stopped; it says why
        };
        buf.resize(BLOCK, 0);
        let n = loop {
            match file.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(FetchError::Fatal(format!(
                        "cannot read the file source: {e}"
                    )));
                }
            }
        };
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        if feed.blocking_send(buf).is_err() {
            return Ok(()); // the writer stopped; it says why
        }
    }
}
