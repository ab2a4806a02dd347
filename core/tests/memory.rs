//! `return_large_frees_to_os`: a freed tensor-sized block leaves the resident set, even after
//! earlier frees that would have raised glibc's adaptive threshold. Its own test binary, so no
//! other test's allocations move the resident figure.

fn resident_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn touch_and_free(bytes: usize) -> (u64, u64) {
    let block = vec![1u8; bytes];
    std::hint::black_box(&block);
    let with = resident_kb();
    drop(block);
    (with, resident_kb())
}

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn freed_large_blocks_leave_the_resident_set() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        eprintln!("skipped: MALLOC_MMAP_THRESHOLD_ is set, the function leaves it alone");
        return;
    }
    longrl_core::memory::return_large_frees_to_os();
    let size = 24 << 20;
    // glibc alone would raise its threshold to 24 MiB on the first free and keep the next blocks.
    for _ in 0..3 {
        let (with, after) = touch_and_free(size);
        assert!(with >= after + 20 * 1024, "24 MiB freed, resident went from {with} kB to {after} kB");
    }
}
