//! Where this process stands in a distributed job, read from the variables the launchers people
//! already use set: torchrun (and its elastic agent's store), Slurm's `srun`, a Kubeflow
//! PyTorchJob. No launcher of our own; no variables at all means one process.
//!
//! Order (scale-out.md D1): torchrun's variables win (so `srun torchrun ...` is torchrun), then
//! Slurm's, then the per-pod RANK/WORLD_SIZE of a PyTorchJob, then the `PET_*` variables that
//! Kubeflow sets for torchrun when a pod runs one process.

use std::collections::HashMap;
use std::fmt;

use crate::nodelist;

/// Which launcher's variables described the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// No launcher variables: one process.
    Single,
    /// torchrun (or anything that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
    Torchrun,
    /// Slurm `srun`, one task per device.
    Slurm,
    /// A Kubeflow PyTorchJob pod running one process (RANK/WORLD_SIZE per pod, or PET_* only).
    Kubeflow,
}

/// Who serves the TCPStore at `master_addr:master_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreHost {
    /// Rank 0 serves it, every other rank connects.
    Rank0,
    /// torchrun's elastic agent already serves it (TORCHELASTIC_USE_AGENT_STORE=True): every rank
    /// connects as a client.
    Agent,
}

/// This process's place in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    pub launcher: Launcher,
    pub rank: usize,
    pub world_size: usize,
    /// Rank on this node; the device of a CUDA rank is `cuda:local_rank`.
    pub local_rank: usize,
    /// Processes on this node, when the launcher says (torchrun's LOCAL_WORLD_SIZE, Slurm's tasks
    /// per node; one per pod on Kubeflow).
    pub local_world_size: Option<usize>,
    pub node_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    pub store: StoreHost,
    /// Restarts of the job so far (torchrun's TORCHELASTIC_RESTART_COUNT, Slurm's
    /// SLURM_RESTART_COUNT): part of the store prefix, so keys of a failed attempt are never read.
    pub restart_count: u32,
}

/// A launcher variable that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    pub launcher: Launcher,
    pub message: String,
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by = match self.launcher {
            Launcher::Single => "the environment",
            Launcher::Torchrun => "torchrun's environment",
            Launcher::Slurm => "Slurm's environment",
            Launcher::Kubeflow => "the PyTorchJob environment",
        };
        write!(f, "{by}: {}", self.message)
    }
}

impl std::error::Error for EnvError {}

/// torchrun's default when MASTER_PORT is not set (`--master-port`).
pub const DEFAULT_MASTER_PORT: u16 = 29500;

impl DistEnv {
    /// One process, no store.
    pub fn single() -> Self {
        DistEnv {
            launcher: Launcher::Single,
            rank: 0,
            world_size: 1,
            local_rank: 0,
            local_world_size: Some(1),
            node_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: DEFAULT_MASTER_PORT,
            store: StoreHost::Rank0,
            restart_count: 0,
        }
    }

    /// Reads this process's environment.
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads a map of variables (what `from_env` does with the real environment).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, EnvError> {
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let vars = Vars { lookup: &lookup, launcher: Launcher::Single };
        let env = if vars.has("LOCAL_RANK") || vars.has("TORCHELASTIC_RUN_ID") || vars.has("GROUP_RANK") {
            vars.with(Launcher::Torchrun).torchrun()?
        } else if vars.has("SLURM_PROCID") {
            vars.with(Launcher::Slurm).slurm()?
        } else if vars.has("RANK") || vars.has("WORLD_SIZE") {
            vars.with(Launcher::Kubeflow).pytorchjob()?
        } else if vars.has("PET_NNODES") || vars.has("PET_NODE_RANK") {
            vars.with(Launcher::Kubeflow).pet_only()?
        } else {
            return Ok(Self::single());
        };
        env.validated()
    }

    /// Whether more than one process takes part.
    pub fn is_distributed(&self) -> bool {
        self.world_size > 1
    }

    /// The prefix of every store key of this attempt.
    pub fn store_prefix(&self) -> String {
        format!("longrl/{}", self.restart_count)
    }

    fn validated(self) -> Result<Self, EnvError> {
        let fail = |message: String| Err(EnvError { launcher: self.launcher, message });
        if self.world_size == 0 {
            return fail("the world size is 0".into());
        }
        if self.rank >= self.world_size {
            return fail(format!("rank {} is not below the world size {}", self.rank, self.world_size));
        }
        if let Some(local) = self.local_world_size.filter(|&n| self.local_rank >= n) {
            return fail(format!("local rank {} is not below the local world size {local}", self.local_rank));
        }
        if self.master_addr.is_empty() {
            return fail("the master address is empty".into());
        }
        Ok(self)
    }
}

struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    launcher: Launcher,
}

impl Vars<'_> {
    fn with(&self, launcher: Launcher) -> Self {
        Vars { lookup: self.lookup, launcher }
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn error(&self, message: String) -> EnvError {
        EnvError { launcher: self.launcher, message }
    }

    fn required(&self, name: &str) -> Result<String, EnvError> {
        self.get(name).ok_or_else(|| self.error(format!("{name} is not set")))
    }

    fn parse<T: std::str::FromStr>(&self, name: &str, value: &str, what: &str) -> Result<T, EnvError> {
        value.parse().map_err(|_| self.error(format!("{name}={value:?} is not {what}")))
    }

    fn number(&self, name: &str) -> Result<Option<usize>, EnvError> {
        self.get(name).map(|v| self.parse(name, &v, "a non-negative integer")).transpose()
    }

    fn required_number(&self, name: &str) -> Result<usize, EnvError> {
        self.parse(name, &self.required(name)?, "a non-negative integer")
    }

    /// The first of `names` that is set, as a port.
    fn port(&self, names: &[&str]) -> Result<Option<u16>, EnvError> {
        let Some((name, value)) = names.iter().find_map(|n| self.get(n).map(|v| (*n, v))) else { return Ok(None) };
        self.parse(name, &value, "a TCP port (0-65535)").map(Some)
    }

    fn torchrun(&self) -> Result<DistEnv, EnvError> {
        let agent =
            self.get("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        Ok(DistEnv {
            launcher: Launcher::Torchrun,
            rank: self.required_number("RANK")?,
            world_size: self.required_number("WORLD_SIZE")?,
            local_rank: self.required_number("LOCAL_RANK")?,
            local_world_size: self.number("LOCAL_WORLD_SIZE")?,
            node_rank: self.number("GROUP_RANK")?.unwrap_or(0),
            master_addr: self.required("MASTER_ADDR")?,
            master_port: self.port(&["MASTER_PORT"])?.ok_or_else(|| self.error("MASTER_PORT is not set".into()))?,
            store: if agent { StoreHost::Agent } else { StoreHost::Rank0 },
            restart_count: self.number("TORCHELASTIC_RESTART_COUNT")?.unwrap_or(0) as u32,
        })
    }

    /// `srun`: the step's own task count and node list when present (a step may use part of the
    /// job), else the job's. MASTER_ADDR/MASTER_PORT, when set, win over the derived ones.
    fn slurm(&self) -> Result<DistEnv, EnvError> {
        let world_size = match self.number("SLURM_STEP_NUM_TASKS")? {
            Some(n) => n,
            None => self.required_number("SLURM_NTASKS")?,
        };
        let node_rank = self.number("SLURM_NODEID")?.unwrap_or(0);
        let local_world_size =
            match ["SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"].iter().find_map(|n| self.get(n)) {
                Some(text) => {
                    let counts = nodelist::expand_tasks_per_node(&text)
                        .map_err(|e| self.error(format!("tasks per node {e}")))?;
                    Some(*counts.get(node_rank).ok_or_else(|| {
                        self.error(format!("tasks per node {text:?} has no entry for node {node_rank} (SLURM_NODEID)"))
                    })?)
                }
                None => None,
            };
        let master_addr = match self.get("MASTER_ADDR") {
            Some(addr) => addr,
            None => {
                let (name, list) = ["SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"]
                    .iter()
                    .find_map(|n| self.get(n).map(|v| (*n, v)))
                    .ok_or_else(|| self.error("neither MASTER_ADDR nor SLURM_JOB_NODELIST is set".into()))?;
                nodelist::first_host(&list).map_err(|e| self.error(format!("{name} {e}")))?
            }
        };
        // Without MASTER_PORT, a port derived from the job id keeps two jobs sharing a first node apart.
        let master_port = match self.port(&["MASTER_PORT"])? {
            Some(port) => port,
            None => match self.number("SLURM_JOB_ID")? {
                Some(id) => 15000 + (id % 10000) as u16,
                None => DEFAULT_MASTER_PORT,
            },
        };
        Ok(DistEnv {
            launcher: Launcher::Slurm,
            rank: self.required_number("SLURM_PROCID")?,
            world_size,
            local_rank: self.number("SLURM_LOCALID")?.unwrap_or(0),
            local_world_size,
            node_rank,
            master_addr,
            master_port,
            store: StoreHost::Rank0,
            restart_count: self.number("SLURM_RESTART_COUNT")?.unwrap_or(0) as u32,
        })
    }

    /// PyTorchJob (Training Operator v1): one process per pod with RANK, WORLD_SIZE, MASTER_ADDR,
    /// MASTER_PORT; the PET_* twins of the master variables stand in when the plain ones are absent.
    fn pytorchjob(&self) -> Result<DistEnv, EnvError> {
        self.one_process_per_pod(self.required_number("RANK")?, self.required_number("WORLD_SIZE")?)
    }

    /// Kubeflow Trainer sets only torchrun's flag defaults (PET_NNODES, PET_NODE_RANK,
    /// PET_NPROC_PER_NODE, PET_MASTER_ADDR, PET_MASTER_PORT); with one process per pod they say
    /// everything, with more only torchrun can start them.
    fn pet_only(&self) -> Result<DistEnv, EnvError> {
        let nnodes = self.required("PET_NNODES")?;
        let world_size =
            self.parse("PET_NNODES", &nnodes, "a node count (an elastic range such as 1:4 needs torchrun)")?;
        self.one_process_per_pod(self.required_number("PET_NODE_RANK")?, world_size)
    }

    fn one_process_per_pod(&self, rank: usize, world_size: usize) -> Result<DistEnv, EnvError> {
        if let Some(n) = self.get("PET_NPROC_PER_NODE").filter(|n| n != "1") {
            return Err(self.error(format!(
                "PET_NPROC_PER_NODE={n} asks for several processes per pod; start longrl under torchrun, which \
                 reads the PET_* variables: torchrun --no-python longrl train ..."
            )));
        }
        Ok(DistEnv {
            launcher: Launcher::Kubeflow,
            rank,
            world_size,
            local_rank: 0,
            local_world_size: Some(1),
            node_rank: rank,
            master_addr: self.master_addr()?,
            master_port: self.port(&["MASTER_PORT", "PET_MASTER_PORT"])?.unwrap_or(DEFAULT_MASTER_PORT),
            store: StoreHost::Rank0,
            restart_count: 0,
        })
    }

    fn master_addr(&self) -> Result<String, EnvError> {
        self.get("MASTER_ADDR")
            .or_else(|| self.get("PET_MASTER_ADDR"))
            .ok_or_else(|| self.error("MASTER_ADDR (or PET_MASTER_ADDR) is not set".into()))
    }
}
