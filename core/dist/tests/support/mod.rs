//! Runs a test as N ranks: the test re-executes its own binary (`--exact <test>`) as child
//! processes with the launcher variables of a rank set, and each child runs the rank's body.
//! Every child has a deadline: past it, all are killed and the test fails with their output, so a
//! hung collective can never hang CI.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Set in the children: which test they run as a rank.
const CHILD: &str = "LONGRL_DIST_TEST_CHILD";

/// One job at a time: the ranks of concurrent tests would share two cores and stretch the
/// timings some tests check.
static ONE_JOB: Mutex<()> = Mutex::new(());

/// The finished rank processes of one job.
pub struct Finished {
    pub status: ExitStatus,
    pub output: String,
}

/// Whether this process is a rank started by [`run_ranks`] for `test` (then run the rank's body).
pub fn is_rank_of(test: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|t| t == test)
}

/// A port nobody listens on right now (the OS's pick).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The variables torchrun gives rank `rank` of `world` on one node.
pub fn torchrun_env(rank: usize, world: usize, port: u16) -> HashMap<String, String> {
    [
        ("RANK", rank.to_string()),
        ("WORLD_SIZE", world.to_string()),
        ("LOCAL_RANK", rank.to_string()),
        ("LOCAL_WORLD_SIZE", world.to_string()),
        ("MASTER_ADDR", "127.0.0.1".to_owned()),
        ("MASTER_PORT", port.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Starts one child per entry of `envs` running `test`, waits for all within `deadline`, and
/// returns their exit statuses and output (stdout and stderr).
pub fn run_ranks(test: &str, envs: Vec<HashMap<String, String>>, deadline: Duration) -> Vec<Finished> {
    let _one_job = ONE_JOB.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let exe = std::env::current_exe().expect("the test binary");
    let mut children: Vec<(Child, JoinHandle<String>, JoinHandle<String>)> = envs
        .into_iter()
        .map(|env| {
            let mut child = Command::new(&exe)
                .args([test, "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD, test)
                .envs(env)
                // One thread per rank: the ranks share this machine's cores.
                .env("OMP_NUM_THREADS", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting a rank");
            let out = drain(child.stdout.take().expect("piped"));
            let err = drain(child.stderr.take().expect("piped"));
            (child, out, err)
        })
        .collect();
    let start = Instant::now();
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; children.len()];
    while statuses.iter().any(Option::is_none) {
        for (i, (child, _, _)) in children.iter_mut().enumerate() {
            if statuses[i].is_none() {
                statuses[i] = child.try_wait().expect("waiting for a rank");
            }
        }
        if start.elapsed() > deadline {
            for (child, _, _) in children.iter_mut() {
                let _ = child.kill();
            }
            let outputs: Vec<String> = children.into_iter().map(|(mut c, o, e)| collect(&mut c, o, e)).collect();
            panic!("{test}: ranks still running after {deadline:?}; their output:\n{}", outputs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let finished: Vec<Finished> = children
        .into_iter()
        .zip(statuses)
        .map(|((mut child, out, err), status)| Finished {
            status: status.expect("finished"),
            output: collect(&mut child, out, err),
        })
        .collect();
    for line in finished.iter().flat_map(|f| f.output.lines()).filter(|l| l.starts_with(REPORT)) {
        eprintln!("{test}: {line}");
    }
    finished
}

/// Lines a rank prints with this prefix are repeated by the parent (seen with `--nocapture`).
pub const REPORT: &str = "[rank report]";

/// Asserts that every rank exited with success, showing all output otherwise.
pub fn assert_all_succeeded(test: &str, finished: &[Finished]) {
    if finished.iter().any(|f| !f.status.success()) {
        let report: Vec<String> =
            finished.iter().enumerate().map(|(r, f)| format!("--- rank {r}: {}\n{}", f.status, f.output)).collect();
        panic!("{test}: a rank failed\n{}", report.join("\n"));
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

fn collect(child: &mut Child, out: JoinHandle<String>, err: JoinHandle<String>) -> String {
    let _ = child.wait();
    format!("{}{}", out.join().unwrap_or_default(), err.join().unwrap_or_default())
}
