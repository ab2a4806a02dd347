//! Process groups on Gloo over loopback: every collective and autograd collective against closed
//! forms, sub-groups, torchrun's agent store, and ranks that die or never come. Each test starts
//! its ranks as child processes of its own binary (tests/support).

mod support;

use std::time::{Duration, Instant};

use longrl_dist::{BackendChoice, DistEnv, GroupOptions, Launcher, ProcessGroup, ReduceOp, StoreHost, StoreServer};
use support::{REPORT, assert_all_succeeded, free_port, is_rank_of, run_ranks, torchrun_env};
use tch::{Kind, Tensor};

/// Generous: a rank's process start loads libtorch, slow on a loaded CI machine.
const DEADLINE: Duration = Duration::from_secs(120);

fn f32s(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

fn i64s(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.flatten(0, -1)).unwrap()
}

fn world(timeout: Duration) -> ProcessGroup {
    let env = DistEnv::from_env().expect("the rank's environment");
    assert_eq!(env.launcher, Launcher::Torchrun);
    ProcessGroup::new(&env, &GroupOptions { backend: BackendChoice::Gloo, timeout }).expect("joining the group")
}

fn run_job(test: &str, world_size: usize) {
    let port = free_port();
    let envs = (0..world_size).map(|r| torchrun_env(r, world_size, port)).collect();
    assert_all_succeeded(test, &run_ranks(test, envs, DEADLINE));
}

#[test]
fn collectives_match_closed_forms() {
    const TEST: &str = "collectives_match_closed_forms";
    if !is_rank_of(TEST) {
        return run_job(TEST, 3);
    }
    let g = world(Duration::from_secs(60));
    let (r, w) = (g.rank() as i64, g.size() as i64);
    assert_eq!(w, 3);
    let tri = w * (w + 1) / 2; // Σ (r + 1)

    // all_reduce, each reduction, float and integer.
    let base = || Tensor::from_slice(&[(r + 1) as f32, (2 * (r + 1)) as f32]);
    for (op, want) in [
        (ReduceOp::Sum, [tri as f32, 2.0 * tri as f32]),
        (ReduceOp::Avg, [tri as f32 / w as f32, 2.0 * tri as f32 / w as f32]),
        (ReduceOp::Max, [w as f32, 2.0 * w as f32]),
        (ReduceOp::Min, [1.0, 2.0]),
    ] {
        let mut t = base();
        g.all_reduce(&mut t, op).unwrap();
        assert_eq!(f32s(&t), want, "all_reduce {op:?}");
    }
    let mut ints = Tensor::from_slice(&[r, 10 * r]);
    g.all_reduce(&mut ints, ReduceOp::Sum).unwrap();
    assert_eq!(i64s(&ints), [3, 30]);
    let mut bf16 = Tensor::from_slice(&[(r + 1) as f32]).to_kind(Kind::BFloat16);
    g.all_reduce(&mut bf16, ReduceOp::Sum).unwrap();
    assert_eq!((bf16.kind(), f32s(&bf16)), (Kind::BFloat16, vec![tri as f32]));

    // broadcast from rank 1.
    let mut b = Tensor::from_slice(&[r as f32; 4]).reshape([2, 2]);
    g.broadcast(&mut b, 1).unwrap();
    assert_eq!(f32s(&b), [1.0; 4]);

    // all_gather: rows in rank order; a scalar counts as one row.
    let gathered = g.all_gather(&Tensor::from_slice(&[r as f32, 10.0 * r as f32]).reshape([1, 2])).unwrap();
    assert_eq!(gathered.size(), [3, 2]);
    assert_eq!(f32s(&gathered), [0.0, 0.0, 1.0, 10.0, 2.0, 20.0]);
    assert_eq!(f32s(&g.all_gather(&Tensor::from(r as f32)).unwrap()), [0.0, 1.0, 2.0]);

    // reduce_scatter: input[i] = 100 r + i; rank r gets Σ_s (100 s + 2r + k) for k in 0..2.
    let input = Tensor::arange(2 * w, (Kind::Float, tch::Device::Cpu)) + (100 * r) as f64;
    let block = g.reduce_scatter(&input, ReduceOp::Sum).unwrap();
    let want: Vec<f32> = (0..2).map(|k| (100 * (w * (w - 1) / 2) + w * (2 * r + k)) as f32).collect();
    assert_eq!(f32s(&block), want);
    let avg = g.reduce_scatter(&input, ReduceOp::Avg).unwrap();
    assert_eq!(f32s(&avg), want.iter().map(|v| v / w as f32).collect::<Vec<_>>());

    // all_to_all, equal shares: row j of rank r (10 r + j) goes to rank j.
    let sent = Tensor::arange(w, (Kind::Int64, tch::Device::Cpu)) + 10 * r;
    let got = g.all_to_all(&sent, None, None).unwrap();
    assert_eq!(i64s(&got), (0..w).map(|q| 10 * q + r).collect::<Vec<_>>());

    // all_to_all with splits: rank r sends s + 1 rows of value 100 r + s to rank s, so it receives
    // r + 1 rows of 100 q + r from every rank q; output splits learnt from the peers, then given.
    let splits: Vec<i64> = (0..w).map(|s| s + 1).collect();
    let rows: Vec<i64> = (0..w).flat_map(|s| std::iter::repeat_n(100 * r + s, (s + 1) as usize)).collect();
    let uneven = Tensor::from_slice(&rows).reshape([-1, 1]).repeat([1, 2]);
    let want: Vec<i64> =
        (0..w).flat_map(|q| std::iter::repeat_n([100 * q + r; 2], (r + 1) as usize)).flatten().collect();
    let learnt = g.all_to_all(&uneven, Some(&splits), None).unwrap();
    assert_eq!((learnt.size(), i64s(&learnt)), (vec![w * (r + 1), 2], want.clone()));
    let given = g.all_to_all(&uneven, Some(&splits), Some(&vec![r + 1; w as usize])).unwrap();
    assert_eq!(i64s(&given), want);

    g.barrier().unwrap();

    // A call wrong on every rank alike fails before reaching the peers and leaves the group usable.
    let err = g.reduce_scatter(&Tensor::zeros([4], (Kind::Float, tch::Device::Cpu)), ReduceOp::Sum).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("rank {r} of 3")) && text.contains("reduce_scatter") && text.contains("multiple"),
        "{text}"
    );
    let err = g.broadcast(&mut Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)), 7).unwrap_err();
    assert!(err.to_string().contains("root 7"), "{err}");

    // Sub-groups: members in the order given; non-members get None; a member alone answers locally.
    let pair = g.split(&[2, 0]).unwrap();
    match r {
        1 => assert!(pair.is_none()),
        _ => {
            let pair = pair.unwrap();
            assert_eq!((pair.size(), pair.rank(), pair.global_rank()), (2, if r == 2 { 0 } else { 1 }, r as usize));
            let mut t = Tensor::from_slice(&[(r + 1) as f32]);
            pair.all_reduce(&mut t, ReduceOp::Sum).unwrap();
            assert_eq!(f32s(&t), [4.0]); // ranks 0 and 2: 1 + 3
            let rows = pair.all_gather(&Tensor::from_slice(&[r as f32])).unwrap();
            assert_eq!(f32s(&rows), [2.0, 0.0]); // rank 2 is the pair's rank 0
        }
    }
    let alone = g.split(&[1]).unwrap();
    if r == 1 {
        let alone = alone.unwrap();
        let mut t = Tensor::from_slice(&[5.0f32]);
        alone.all_reduce(&mut t, ReduceOp::Avg).unwrap();
        assert_eq!((alone.size(), f32s(&t)), (1, vec![5.0]));
    }
    // The world still works after the sub-groups.
    let mut t = Tensor::from_slice(&[1.0f32]);
    g.all_reduce(&mut t, ReduceOp::Sum).unwrap();
    assert_eq!(f32s(&t), [3.0]);
    assert!(g.split(&[0, 0]).unwrap_err().to_string().contains("listed twice"));
}

#[test]
fn autograd_collectives_give_closed_form_gradients() {
    const TEST: &str = "autograd_collectives_give_closed_form_gradients";
    if !is_rank_of(TEST) {
        return run_job(TEST, 2);
    }
    let g = world(Duration::from_secs(60));
    let (r, w) = (g.rank() as i64, g.size() as i64);
    let tri = (w * (w + 1) / 2) as f32;
    let weights = |n: i64, scale: i64| Tensor::arange_start(1, n + 1, (Kind::Float, tch::Device::Cpu)) * scale as f64;

    // all_gather: loss_r = Σ y · (r + 1)(1, 2, ...); d loss / d x_r = Σ_s (s + 1) · (2r + 1, 2r + 2).
    let x = Tensor::from_slice(&[(r + 1) as f32, (r + 2) as f32]).set_requires_grad(true);
    let y = g.all_gather_autograd(&x).unwrap();
    assert!(y.requires_grad(), "the gathered tensor carries a grad_fn");
    assert_eq!(f32s(&y), [1.0, 2.0, 2.0, 3.0]);
    (&y * weights(2 * w, r + 1)).sum(Kind::Float).backward();
    assert_eq!(f32s(&x.grad()), [tri * (2 * r + 1) as f32, tri * (2 * r + 2) as f32]);

    // reduce_scatter (sum): forward Σ_s x_s, block r; backward gathers every rank's gradient.
    let x = (Tensor::arange(2 * w, (Kind::Float, tch::Device::Cpu)) + (10 * r) as f64).set_requires_grad(true);
    let y = g.reduce_scatter_autograd(&x).unwrap();
    let want: Vec<f32> = (0..2).map(|k| (10 * (w * (w - 1) / 2) + w * (2 * r + k)) as f32).collect();
    assert_eq!(f32s(&y), want);
    (&y * weights(2, r + 1)).sum(Kind::Float).backward();
    let want: Vec<f32> = (0..w).flat_map(|s| [(s + 1) as f32, 2.0 * (s + 1) as f32]).collect();
    assert_eq!(f32s(&x.grad()), want);

    // all_to_all with uneven splits: rank r sends s + 1 rows to rank s. Rank s weighs its output
    // row i by (s + 1)(i + 1), and the rows from rank q start at q (s + 1): so row k of the block
    // rank r sends to s gets the gradient (s + 1)(r (s + 1) + k + 1).
    let splits: Vec<i64> = (0..w).map(|s| s + 1).collect();
    let n = splits.iter().sum::<i64>();
    let x = (Tensor::arange(n, (Kind::Float, tch::Device::Cpu)) + (100 * r) as f64).set_requires_grad(true);
    let y = g.all_to_all_autograd(&x, Some(&splits), None).unwrap();
    assert_eq!(y.size(), [w * (r + 1)]);
    (&y * weights(w * (r + 1), r + 1)).sum(Kind::Float).backward();
    let want: Vec<f32> =
        (0..w).flat_map(|s| (0..s + 1).map(move |k| ((s + 1) * (r * (s + 1) + k + 1)) as f32)).collect();
    assert_eq!(f32s(&x.grad()), want);

    // Sequence-parallel exchange: [T/sp = 2, H = 4] with x[t, h] = 100 r + 10 t + h; scatter the
    // heads, gather the sequence: out[t', h'] on rank r = x of rank t' / 2 at (t' % 2, 2r + h').
    let input = (Tensor::from_slice(&[0.0f32, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0]).reshape([2, 4])
        + (100 * r) as f64)
        .set_requires_grad(true);
    let out = g.all_to_all_dims(&input, 1, 0).unwrap();
    assert_eq!(out.size(), [4, 2]);
    let want: Vec<f32> =
        (0..4).flat_map(|t| (0..2).map(move |h| (100 * (t / 2) + 10 * (t % 2) + 2 * r + h) as f32)).collect();
    assert_eq!(f32s(&out), want);
    // Backward is the reverse exchange: weighting output [t', h'] by 1 + t' * 2 + h' + 8 r gives the
    // input [t, h] of rank q the weight its value landed on: at rank h / 2, position (2q + t, h % 2).
    let out_weights = Tensor::arange(8, (Kind::Float, tch::Device::Cpu)).reshape([4, 2]) + (1 + 8 * r) as f64;
    (&out * out_weights).sum(Kind::Float).backward();
    let want: Vec<f32> =
        (0..2).flat_map(|t| (0..4).map(move |h| (1 + 8 * (h / 2) + 2 * (2 * r + t) + h % 2) as f32)).collect();
    assert_eq!(f32s(&input.grad()), want);
}

#[test]
fn agent_store_clients_and_a_lost_rank_zero() {
    const TEST: &str = "agent_store_clients_and_a_lost_rank_zero";
    if !is_rank_of(TEST) {
        // This process plays torchrun's elastic agent: it serves the store, the ranks connect.
        let port = free_port();
        let _agent = StoreServer::start("127.0.0.1", port, Duration::from_secs(60)).unwrap();
        let envs = (0..2)
            .map(|r| {
                let mut env = torchrun_env(r, 2, port);
                env.insert("TORCHELASTIC_USE_AGENT_STORE".into(), "True".into());
                env.insert("TORCHELASTIC_RESTART_COUNT".into(), "3".into());
                env.insert("TORCHELASTIC_RUN_ID".into(), "test".into());
                env
            })
            .collect();
        return expect_victim_killed(TEST, &run_ranks(TEST, envs, DEADLINE), 0);
    }
    let env = DistEnv::from_env().unwrap();
    assert_eq!((env.store, env.restart_count, env.store_prefix()), (StoreHost::Agent, 3, "longrl/3".to_owned()));
    // Had a rank tried to serve the store itself, its port would be taken by the agent's.
    let g = world(Duration::from_secs(30));
    let mut t = Tensor::from_slice(&[(g.rank() + 1) as f32]);
    g.all_reduce(&mut t, ReduceOp::Sum).unwrap();
    assert_eq!(f32s(&t), [3.0]);
    // The agent's store outlives rank 0, so the heartbeats name it.
    die_or_name_the_dead(&g, 0);
}

#[test]
fn killed_rank_is_named_by_the_survivor() {
    const TEST: &str = "killed_rank_is_named_by_the_survivor";
    if !is_rank_of(TEST) {
        let port = free_port();
        let finished = run_ranks(TEST, (0..2).map(|r| torchrun_env(r, 2, port)).collect(), DEADLINE);
        return expect_victim_killed(TEST, &finished, 1);
    }
    die_or_name_the_dead(&world(Duration::from_secs(30)), 1);
}

#[test]
fn killed_store_host_is_named_by_the_survivor() {
    const TEST: &str = "killed_store_host_is_named_by_the_survivor";
    if !is_rank_of(TEST) {
        let port = free_port();
        let finished = run_ranks(TEST, (0..2).map(|r| torchrun_env(r, 2, port)).collect(), DEADLINE);
        return expect_victim_killed(TEST, &finished, 0);
    }
    // Rank 0 serves the store: with it gone, the store's silence names it.
    die_or_name_the_dead(&world(Duration::from_secs(30)), 0);
}

/// Parent side of a killing: `victim` ended by a signal, every other rank succeeded.
fn expect_victim_killed(test: &str, finished: &[support::Finished], victim: usize) {
    let dead = &finished[victim];
    assert_eq!(dead.status.code(), None, "rank {victim} ends by SIGKILL:\n{}", dead.output);
    let (before, after) = finished.split_at(victim);
    assert_all_succeeded(test, before);
    assert_all_succeeded(test, &after[1..]);
}

/// Rank side: after a barrier `victim` kills itself (SIGKILL); the others' next collective must
/// fail naming it.
fn die_or_name_the_dead(g: &ProcessGroup, victim: usize) {
    g.barrier().unwrap();
    if g.rank() == victim {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: raising a signal at this process.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    expect_lost_rank(g, victim, Duration::from_secs(30));
}

#[test]
fn a_peer_that_never_comes_fails_the_collective_at_the_timeout() {
    const TEST: &str = "a_peer_that_never_comes_fails_the_collective_at_the_timeout";
    if !is_rank_of(TEST) {
        return run_job(TEST, 2);
    }
    let timeout = Duration::from_secs(3);
    let g = world(timeout);
    if g.rank() == 1 {
        // Alive (heartbeats go on) but never joins: rank 0's all_reduce must end at its timeout.
        std::thread::sleep(Duration::from_secs(12));
        return;
    }
    let start = Instant::now();
    let err = g.all_reduce(&mut Tensor::from_slice(&[1.0f32]), ReduceOp::Sum).unwrap_err().to_string();
    let took = start.elapsed();
    assert!(err.contains("rank 0 of 2: all_reduce(sum)"), "{err}");
    assert!(err.contains("every other rank of the group is alive"), "{err}");
    assert!(took >= timeout && took < timeout * 4, "failed after {took:?}: {err}");
    eprintln!("{REPORT} timed out as expected after {took:?}: {err}");
}

/// The next collective fails within `timeout` naming `lost`, and the group stays failed.
fn expect_lost_rank(g: &ProcessGroup, lost: usize, timeout: Duration) {
    let start = Instant::now();
    let err = g.all_reduce(&mut Tensor::from_slice(&[1.0f32]), ReduceOp::Sum).unwrap_err().to_string();
    let took = start.elapsed();
    let me = g.rank();
    assert!(err.contains(&format!("rank {me} of 2: all_reduce(sum)")), "{err}");
    assert!(err.contains(&format!("lost rank {lost}")), "{err}");
    assert!(took < timeout, "the error took {took:?}: {err}");
    eprintln!("{REPORT} rank {me} saw the loss of rank {lost} after {took:?}: {err}");
    let again = g.barrier().unwrap_err().to_string();
    assert!(again.contains("failed before") && again.contains(&format!("lost rank {lost}")), "{again}");
}

#[test]
fn a_world_of_one_answers_every_collective_locally() {
    for g in [ProcessGroup::single(), ProcessGroup::new(&DistEnv::single(), &GroupOptions::default()).unwrap()] {
        assert_eq!((g.rank(), g.size()), (0, 1));
        let mut t = Tensor::from_slice(&[2.0f32, 3.0]);
        g.all_reduce(&mut t, ReduceOp::Avg).unwrap();
        g.broadcast(&mut t, 0).unwrap();
        assert_eq!(f32s(&t), [2.0, 3.0]);
        assert_eq!(f32s(&g.all_gather(&t).unwrap()), [2.0, 3.0]);
        assert_eq!(f32s(&g.reduce_scatter(&t, ReduceOp::Sum).unwrap()), [2.0, 3.0]);
        assert_eq!(f32s(&g.all_to_all(&t, Some(&[2]), None).unwrap()), [2.0, 3.0]);
        assert!(g.all_to_all(&t, Some(&[1]), None).is_err(), "splits must cover the rows");
        g.barrier().unwrap();
        let x = t.copy().set_requires_grad(true);
        let y = g.all_gather_autograd(&x).unwrap();
        (&y * 3.0).sum(Kind::Float).backward();
        assert_eq!(f32s(&x.grad()), [3.0, 3.0]);
        let sub = g.split(&[0]).unwrap().unwrap();
        assert_eq!(sub.size(), 1);
        assert!(g.split(&[1]).is_err(), "rank 1 is not in a world of one");
    }
}
