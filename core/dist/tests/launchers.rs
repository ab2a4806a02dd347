//! DistEnv over the variable sets the launchers really set: torchrun (with and without its agent
//! store), Slurm `srun`, `srun torchrun`, Kubeflow PyTorchJob pods and Kubeflow Trainer's PET_*.

use std::collections::HashMap;

use longrl_dist::{DistEnv, Launcher, StoreHost};

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn parse(pairs: &[(&str, &str)]) -> DistEnv {
    DistEnv::from_map(&vars(pairs)).unwrap_or_else(|e| panic!("{pairs:?}: {e}"))
}

fn refused(pairs: &[(&str, &str)]) -> String {
    match DistEnv::from_map(&vars(pairs)) {
        Ok(env) => panic!("{pairs:?} was accepted as {env:?}"),
        Err(e) => e.to_string(),
    }
}

/// What torchrun's local elastic agent sets for worker 3 of 8 on node 1 of 2 (local rank 1).
const TORCHRUN: &[(&str, &str)] = &[
    ("RANK", "5"),
    ("LOCAL_RANK", "1"),
    ("WORLD_SIZE", "8"),
    ("LOCAL_WORLD_SIZE", "4"),
    ("GROUP_RANK", "1"),
    ("GROUP_WORLD_SIZE", "2"),
    ("ROLE_RANK", "5"),
    ("ROLE_NAME", "default"),
    ("ROLE_WORLD_SIZE", "8"),
    ("MASTER_ADDR", "node01"),
    ("MASTER_PORT", "29400"),
    ("TORCHELASTIC_RESTART_COUNT", "2"),
    ("TORCHELASTIC_MAX_RESTARTS", "3"),
    ("TORCHELASTIC_RUN_ID", "job7"),
    ("TORCHELASTIC_USE_AGENT_STORE", "False"),
    ("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1"),
];

#[test]
fn no_launcher_means_one_process() {
    let env = parse(&[("PATH", "/usr/bin"), ("HOME", "/root")]);
    assert_eq!(env, DistEnv::single());
    assert!(!env.is_distributed());
    assert_eq!((env.rank, env.world_size, env.local_rank), (0, 1, 0));
}

#[test]
fn torchrun_variables() {
    let env = parse(TORCHRUN);
    assert_eq!(env.launcher, Launcher::Torchrun);
    assert_eq!((env.rank, env.world_size, env.local_rank, env.local_world_size, env.node_rank), (5, 8, 1, Some(4), 1));
    assert_eq!((env.master_addr.as_str(), env.master_port), ("node01", 29400));
    assert_eq!((env.store, env.restart_count), (StoreHost::Rank0, 2));
    assert_eq!(env.store_prefix(), "longrl/2");
}

#[test]
fn torchrun_agent_store_makes_every_rank_a_client() {
    let mut pairs = TORCHRUN.to_vec();
    pairs.retain(|(k, _)| *k != "TORCHELASTIC_USE_AGENT_STORE");
    for value in ["True", "true", "1"] {
        let mut with = pairs.clone();
        with.push(("TORCHELASTIC_USE_AGENT_STORE", value));
        assert_eq!(parse(&with).store, StoreHost::Agent, "TORCHELASTIC_USE_AGENT_STORE={value}");
    }
    assert_eq!(parse(&pairs).store, StoreHost::Rank0, "absent: rank 0 serves the store");
}

#[test]
fn torchrun_errors_name_the_variable() {
    let without = |name: &str| TORCHRUN.iter().copied().filter(|(k, _)| *k != name).collect::<Vec<_>>();
    for name in ["RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"] {
        let err = refused(&without(name));
        assert!(err.contains(&format!("{name} is not set")) && err.contains("torchrun"), "{err}");
    }
    // Later pairs win (as a second export would).
    let with = |name: &'static str, value: &'static str| [TORCHRUN, &[(name, value)]].concat();
    assert!(refused(&with("RANK", "five")).contains("RANK=\"five\" is not a non-negative integer"));
    assert!(refused(&with("MASTER_PORT", "70000")).contains("MASTER_PORT=\"70000\" is not a TCP port"));
    let rank = with("RANK", "8");
    assert!(refused(&rank).contains("rank 8 is not below the world size 8"));
}

#[test]
fn slurm_srun_task() {
    // srun --nodes 3 --ntasks-per-node 4: task 6 runs on the second node, local id 2.
    let env = parse(&[
        ("SLURM_JOB_ID", "123456"),
        ("SLURM_PROCID", "6"),
        ("SLURM_LOCALID", "2"),
        ("SLURM_NODEID", "1"),
        ("SLURM_NTASKS", "12"),
        ("SLURM_TASKS_PER_NODE", "4(x3)"),
        ("SLURM_JOB_NODELIST", "gpu[07-08,11]"),
    ]);
    assert_eq!(env.launcher, Launcher::Slurm);
    assert_eq!((env.rank, env.world_size, env.local_rank, env.local_world_size, env.node_rank), (6, 12, 2, Some(4), 1));
    assert_eq!(env.master_addr, "gpu07", "the first host of the job's node list");
    assert_eq!(env.master_port, 15000 + 3456, "derived from the job id");
    assert_eq!(env.store, StoreHost::Rank0);
}

#[test]
fn slurm_step_variables_and_explicit_master_win() {
    // A step on part of the job: the step's node list and task count, not the job's.
    let step = parse(&[
        ("SLURM_PROCID", "0"),
        ("SLURM_LOCALID", "0"),
        ("SLURM_NTASKS", "16"),
        ("SLURM_STEP_NUM_TASKS", "2"),
        ("SLURM_STEP_TASKS_PER_NODE", "1(x2)"),
        ("SLURM_JOB_NODELIST", "n[1-4]"),
        ("SLURM_STEP_NODELIST", "n[3-4]"),
        ("SLURM_RESTART_COUNT", "1"),
    ]);
    assert_eq!((step.world_size, step.local_world_size, step.master_addr.as_str()), (2, Some(1), "n3"));
    assert_eq!((step.master_port, step.restart_count), (29500, 1));
    let explicit = parse(&[
        ("SLURM_PROCID", "1"),
        ("SLURM_LOCALID", "1"),
        ("SLURM_NTASKS", "2"),
        ("SLURM_JOB_NODELIST", "node[01-03,07]"),
        ("MASTER_ADDR", "10.0.0.5"),
        ("MASTER_PORT", "12345"),
    ]);
    assert_eq!((explicit.master_addr.as_str(), explicit.master_port), ("10.0.0.5", 12345));
    assert_eq!(explicit.local_world_size, None, "no tasks-per-node variable: unknown");
    let listed = parse(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "8"), ("SLURM_JOB_NODELIST", "node[01-03,07]")]);
    assert_eq!(listed.master_addr, "node01");
}

#[test]
fn slurm_errors_name_the_variable() {
    let err = refused(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2")]);
    assert!(err.contains("Slurm") && err.contains("SLURM_JOB_NODELIST"), "{err}");
    let err = refused(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_JOB_NODELIST", "node[01-03")]);
    assert!(err.contains("SLURM_JOB_NODELIST") && err.contains("without ']'"), "{err}");
    let err = refused(&[("SLURM_PROCID", "0"), ("SLURM_JOB_NODELIST", "a")]);
    assert!(err.contains("SLURM_NTASKS is not set"), "{err}");
}

#[test]
fn srun_torchrun_is_torchrun() {
    let mut pairs = TORCHRUN.to_vec();
    pairs.extend([("SLURM_PROCID", "1"), ("SLURM_NTASKS", "2"), ("SLURM_JOB_NODELIST", "n[1-2]")]);
    let env = parse(&pairs);
    assert_eq!((env.launcher, env.rank, env.world_size), (Launcher::Torchrun, 5, 8));
}

#[test]
fn kubeflow_pytorchjob_pod() {
    let env = parse(&[
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("MASTER_ADDR", "job-master-0"),
        ("MASTER_PORT", "23456"),
        ("WORLD_SIZE", "4"),
        ("RANK", "2"),
        ("PYTHONUNBUFFERED", "0"),
    ]);
    assert_eq!(env.launcher, Launcher::Kubeflow);
    assert_eq!((env.rank, env.world_size, env.local_rank, env.local_world_size, env.node_rank), (2, 4, 0, Some(1), 2));
    assert_eq!((env.master_addr.as_str(), env.master_port, env.store), ("job-master-0", 23456, StoreHost::Rank0));
}

#[test]
fn pet_variables_are_defaults() {
    // PyTorchJob with the PET_* twins only for the master.
    let env = parse(&[
        ("WORLD_SIZE", "2"),
        ("RANK", "1"),
        ("PET_MASTER_ADDR", "job-master-0"),
        ("PET_MASTER_PORT", "23456"),
        ("PET_NPROC_PER_NODE", "1"),
    ]);
    assert_eq!((env.master_addr.as_str(), env.master_port), ("job-master-0", 23456));
    // Kubeflow Trainer: only torchrun's flag defaults, one process per pod.
    let env = parse(&[
        ("PET_NNODES", "3"),
        ("PET_NPROC_PER_NODE", "1"),
        ("PET_NODE_RANK", "2"),
        ("PET_MASTER_ADDR", "train-node-0-0.train"),
        ("PET_MASTER_PORT", "29400"),
    ]);
    assert_eq!(env.launcher, Launcher::Kubeflow);
    assert_eq!(
        (env.rank, env.world_size, env.master_addr.as_str(), env.master_port),
        (2, 3, "train-node-0-0.train", 29400)
    );
    // Several processes per pod, or an elastic node range: only torchrun can start those.
    let err =
        refused(&[("PET_NNODES", "2"), ("PET_NPROC_PER_NODE", "8"), ("PET_NODE_RANK", "0"), ("PET_MASTER_ADDR", "m")]);
    assert!(err.contains("PET_NPROC_PER_NODE=8") && err.contains("torchrun --no-python"), "{err}");
    let err = refused(&[("PET_NNODES", "1:4"), ("PET_NODE_RANK", "0"), ("PET_MASTER_ADDR", "m")]);
    assert!(err.contains("PET_NNODES=\"1:4\"") && err.contains("torchrun"), "{err}");
    // Under torchrun the PET_* variables were torchrun's input; its own variables decide.
    let mut pairs = TORCHRUN.to_vec();
    pairs.extend([("PET_NPROC_PER_NODE", "4"), ("PET_NNODES", "2")]);
    assert_eq!(parse(&pairs).launcher, Launcher::Torchrun);
}
