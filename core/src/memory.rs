//! Process-wide memory settings for the programs that run models.

/// Large frees go back to the operating system: fixes glibc's mmap threshold at 4 MiB.
///
/// glibc raises its threshold (up to 32 MiB) each time an mmapped block is freed, after which
/// blocks of tensor size come from its heap and stay resident when freed. A training step frees
/// and allocates many such tensors, so peak resident memory then depends on heap fragmentation:
/// the same 8K-token log-prob pass peaked at 4.2 GB or 5.7 GB from run to run, and at 3.9 GB
/// every time with the threshold fixed, at the same speed. A threshold the user set through
/// `MALLOC_MMAP_THRESHOLD_` is left alone. Call it once, at the start of `main`.
pub fn return_large_frees_to_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; any value is valid input.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        }
    }
}
