//! How the C allocator holds memory, set before any thread starts.
//!
//! glibc's defaults cost the service about half a gigabyte at a million learners
//! (`nigrani-bench api`: peak RSS 1,556 MiB against an analytics state of about 600 MiB). Two
//! causes: every thread that allocates may get an arena of its own (up to 8 per core), each
//! keeping its freed pages; and the threshold above which an allocation is its own mapping
//! grows after each large free, so the frame columns rebuilt at every publish (megabytes each)
//! end up in the heap, where freed columns fragment it instead of going back to the system.
//! Two arenas and a fixed 4 MiB threshold bring the same run to a peak of about 1,000 MiB at
//! the same throughput. A `MALLOC_ARENA_MAX` or `MALLOC_MMAP_THRESHOLD_` in the environment
//! still wins.

/// Arenas shared by every thread.
const ARENAS: i32 = 2;
/// Allocations of at least this many bytes are mappings of their own, returned when freed.
const MMAP_THRESHOLD: i32 = 4 << 20;

/// Applies the settings above, unless the environment sets them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn tune() {
    for (variable, parameter, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, ARENAS),
        (
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD,
        ),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: `mallopt` only sets an allocator parameter; it is called from `main`
            // before the runtime starts any thread.
            unsafe {
                libc::mallopt(parameter, value);
            }
        }
    }
}

/// Other allocators keep their defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn tune() {}
