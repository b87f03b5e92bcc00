//! Free space on the data directory's file system: the floor a download
//! must leave (`--min-free-space`, a size or a share of the file system),
//! and the figures `/metrics` shows.

use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// The free space a download must leave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Floor {
    Bytes(u64),
    /// A share of the file system's size, 0 to 100.
    Percent(f64),
}

impl Floor {
    /// `1GiB`, `500MiB`, `2G`, `1048576` (bytes) or `5%`.
    pub fn parse(text: &str) -> Result<Floor, String> {
        let text = text.trim();
        if let Some(p) = text.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{text:?} is not a percentage (e.g. 5%)"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err("a percentage is 0% to 100%".into());
            }
            return Ok(Floor::Percent(p));
        }
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| {
            format!("{text:?} is not a size (e.g. 1GiB, 500MiB) or a percentage (5%)")
        })?;
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "K" | "KiB" | "k" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            "T" | "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "unknown unit {other:?} (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB, or %)"
                ));
            }
        };
        number
            .checked_mul(scale)
            .map(Floor::Bytes)
            .ok_or_else(|| format!("{text} is too large"))
    }

    /// The floor in bytes on a file system of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            Floor::Bytes(b) => b,
            Floor::Percent(p) => (total as f64 * p / 100.0).ceil() as u64,
        }
    }
}

impl std::fmt::Display for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Floor::Bytes(b) => write!(f, "{b} bytes"),
            Floor::Percent(p) => write!(f, "{p}% of the file system"),
        }
    }
}

/// The floor as it is now: a reload may change it.
#[derive(Debug, Clone)]
pub struct SharedFloor(Arc<RwLock<Floor>>);

impl SharedFloor {
    pub fn new(floor: Floor) -> Self {
        Self(Arc::new(RwLock::new(floor)))
    }

    pub fn get(&self) -> Floor {
        *self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn replace(&self, floor: Floor) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = floor;
    }
}

/// A file system's size and what is free for packd (blocks free to
/// unprivileged users).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub total: u64,
    pub free: u64,
}

impl Space {
    pub fn used(self) -> u64 {
        self.total.saturating_sub(self.free)
    }
}

/// `statvfs` of the file system holding `path`. Blocking.
pub fn space(path: &Path) -> io::Result<Space> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("a path with a NUL byte"))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let unit = st.f_frsize as u64;
    Ok(Space {
        total: (st.f_blocks as u64).saturating_mul(unit),
        free: (st.f_bavail as u64).saturating_mul(unit),
    })
}

/// Why a download may not start: `needed` more bytes would leave less
/// than the floor.
pub fn check(space: Space, floor: Floor, needed: u64) -> Result<(), String> {
    let min = floor.bytes(space.total);
    let left = space.free.saturating_sub(needed);
    if left < min {
        return Err(format!(
            "not enough free space: the data directory's file system has {} free; {} more would leave {}, below --min-free-space ({floor}: {}). Free space, or lower --min-free-space",
            human(space.free),
            human(needed),
            human(left),
            human(min)
        ));
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_are_sizes_or_shares() {
        assert_eq!(Floor::parse("1GiB"), Ok(Floor::Bytes(1 << 30)));
        assert_eq!(Floor::parse("500MB"), Ok(Floor::Bytes(500_000_000)));
        assert_eq!(Floor::parse("0"), Ok(Floor::Bytes(0)));
        assert_eq!(Floor::parse("5%"), Ok(Floor::Percent(5.0)));
        assert!(Floor::parse("101%").is_err());
        assert!(Floor::parse("1 PB").is_err());
        assert!(Floor::parse("lots").is_err());
        assert_eq!(Floor::Percent(10.0).bytes(1000), 100);
    }

    #[test]
    fn a_download_that_would_cross_the_floor_is_refused_with_the_figures() {
        let space = Space {
            total: 10 << 30,
            free: 2 << 30,
        };
        assert!(check(space, Floor::Bytes(1 << 30), 512 << 20).is_ok());
        let e = check(space, Floor::Bytes(1 << 30), 1536 << 20).unwrap_err();
        assert!(
            e.contains("2.0 GiB free") && e.contains("leave 512.0 MiB"),
            "{e}"
        );
        assert!(check(space, Floor::Percent(25.0), 0).is_err());
        assert!(real_space_reads().free > 0);
    }

    fn real_space_reads() -> Space {
        space(Path::new("/")).unwrap()
    }
}
