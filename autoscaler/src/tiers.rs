//! The RAM tier of the weight cache and the host facts the parking policy reads: how much of
//! a weight file the page cache holds (`mincore(2)`), promoting a file into it
//! (`posix_fadvise(WILLNEED)`, the kernel's readahead) and demoting it
//! (`posix_fadvise(DONTNEED)`, which drops its clean pages), the host's available memory and a
//! process's resident set. Linux only; elsewhere every answer is "unknown" and the calls do
//! nothing.

use protocol::health::Tier;
use std::path::Path;

/// Share of a file that must be in the page cache for a start to count as from RAM.
const RAM_RESIDENT: f64 = 0.9;

/// The tier a new worker of a model would start from: `Remote` if its served weight file is
/// not in the disk cache, `Ram` if the page cache holds at least 90% of it, else `Disk`.
/// `None` without a weight file (a custom command).
pub fn tier_of(weights: Option<&Path>) -> Option<Tier> {
    let path = weights?;
    if !path.exists() {
        return Some(Tier::Remote);
    }
    Some(match resident_share(path) {
        Some(r) if r >= RAM_RESIDENT => Tier::Ram,
        _ => Tier::Disk,
    })
}

/// The share (0..=1) of `path`'s pages in the page cache, by `mincore(2)` over a read-only
/// mapping; `None` if it cannot be read or mapped.
pub fn resident_share(path: &Path) -> Option<f64> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(path).ok()?;
        let len = f.metadata().ok()?.len() as usize;
        if len == 0 {
            return Some(1.0);
        }
        // SAFETY: a private read-only mapping of a file we opened, unmapped before return;
        // mincore(2) writes one byte per page into a buffer of that many bytes.
        unsafe {
            let addr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            );
            if addr == libc::MAP_FAILED {
                return None;
            }
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let pages = len.div_ceil(page);
            let mut vec = vec![0u8; pages];
            let rc = libc::mincore(addr, len, vec.as_mut_ptr());
            libc::munmap(addr, len);
            if rc != 0 {
                return None;
            }
            let resident = vec.iter().filter(|b| **b & 1 == 1).count();
            Some(resident as f64 / pages as f64)
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// Advise the kernel about all of `path` (`POSIX_FADV_WILLNEED` reads it into the page cache
/// in the background; `POSIX_FADV_DONTNEED` drops its clean pages). Errors are ignored: this
/// is a hint.
fn advise(path: &Path, advice: i32) {
    #[cfg(target_os = "linux")]
    if let Ok(f) = std::fs::File::open(path) {
        use std::os::fd::AsRawFd;
        // SAFETY: posix_fadvise(2) on a descriptor we own, whole file (len 0).
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, advice);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (path, advice);
}

/// Promote a weight file to the RAM tier: the kernel starts reading it into the page cache
/// now (asynchronously), so a worker about to load it reads memory, not disk.
pub fn promote(path: &Path) {
    #[cfg(target_os = "linux")]
    advise(path, libc::POSIX_FADV_WILLNEED);
}

/// Demote a weight file to the disk tier: its pages leave the page cache (pages a running
/// process has mapped stay), freeing the RAM for others.
pub fn demote(path: &Path) {
    #[cfg(target_os = "linux")]
    advise(path, libc::POSIX_FADV_DONTNEED);
}

/// The host's available memory as a share of its total (`MemAvailable / MemTotal` in
/// `/proc/meminfo`); `None` where unknown.
pub fn available_memory_share() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some(field("MemAvailable:")? / field("MemTotal:")?)
}

/// Resident memory of process `pid` in bytes (`/proc/PID/statm`'s second field, in pages);
/// `None` where unknown.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    #[cfg(unix)]
    // SAFETY: sysconf(3) has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    #[cfg(not(unix))]
    let page = 4096;
    Some(pages * page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_remote_a_read_one_is_in_ram_a_demoted_one_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.bin");
        assert_eq!(tier_of(None), None);
        assert_eq!(tier_of(Some(&p)), Some(Tier::Remote));
        std::fs::write(&p, vec![7u8; 1 << 20]).unwrap();
        // Written pages are in the page cache (dirty until written back).
        let _ = std::fs::read(&p).unwrap();
        assert_eq!(tier_of(Some(&p)), Some(Tier::Ram));
        // DONTNEED drops clean pages only: flush first. (On a filesystem whose pages cannot
        // be dropped, e.g. tmpfs, the file stays resident and this part proves nothing.)
        std::fs::File::open(&p).unwrap().sync_all().unwrap();
        demote(&p);
        let share = resident_share(&p).unwrap();
        if share < 1.0 {
            assert_eq!(tier_of(Some(&p)), Some(Tier::Disk), "{share}");
            promote(&p);
            let _ = std::fs::read(&p).unwrap();
            assert_eq!(tier_of(Some(&p)), Some(Tier::Ram));
        }
    }

    #[test]
    fn host_memory_and_our_own_resident_set_are_read() {
        let share = available_memory_share().unwrap();
        assert!(share > 0.0 && share <= 1.0, "{share}");
        let rss = resident_bytes(std::process::id()).unwrap();
        assert!(rss > 1 << 20, "{rss}");
    }
}
