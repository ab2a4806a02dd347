//! Test support shared by the sampler plugins' unit tests (feature `test-support`): the misuse
//! every sampler refuses, and the save/restore harness that runs a sampler and its restored copy
//! side by side.

use longrl_core::api::{PoolItem, Sampler};

/// Drawing before `begin_phase`, an empty pool and a malformed saved state are errors that say so.
/// `malformed` is a state the sampler cannot read.
pub fn assert_refuses_misuse<S: Sampler + ?Sized>(s: &mut S, malformed: &[u8]) {
    let drawn = s.next_batch(1).expect_err("a draw before begin_phase").to_string();
    assert!(drawn.contains("before begin_phase"), "{drawn}");
    let empty = s.begin_phase(0, &[]).expect_err("an empty pool").to_string();
    assert!(empty.contains("no examples"), "{empty}");
    let state = s.load_state(malformed).expect_err("a malformed state").to_string();
    assert!(state.contains("malformed"), "{state}");
}

/// `a` and `b` (restored from `a`'s saved state) draw `steps` batches of `batch` alike, observe
/// the same rewards (`rewards(index, step)`, none when it returns an empty vector), count the same
/// epochs, then enter phase `next` over `pool` at epoch 0 and still draw, save and report alike.
pub fn assert_continue_alike<S: Sampler + ?Sized>(
    a: &mut S,
    b: &mut S,
    steps: u32,
    batch: usize,
    rewards: impl Fn(u32, u32) -> Vec<f32>,
    next: usize,
    pool: &[PoolItem],
) {
    for step in 0..steps {
        let (x, y) = (a.next_batch(batch).unwrap(), b.next_batch(batch).unwrap());
        assert_eq!(x, y, "step {step}");
        for i in x {
            let r = rewards(i, step);
            if !r.is_empty() {
                a.observe(i, &r).unwrap();
                b.observe(i, &r).unwrap();
            }
        }
        assert_eq!(a.epochs_completed().unwrap(), b.epochs_completed().unwrap(), "step {step}");
    }
    a.begin_phase(next, pool).unwrap();
    b.begin_phase(next, pool).unwrap();
    assert_eq!(a.epochs_completed().unwrap(), 0, "a new phase starts at epoch 0");
    let n = pool.len() * 4 + 3;
    assert_eq!(a.next_batch(n).unwrap(), b.next_batch(n).unwrap());
    assert_eq!(a.save_state().unwrap(), b.save_state().unwrap());
    assert_eq!(a.metrics().unwrap(), b.metrics().unwrap());
}
