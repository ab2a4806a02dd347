//! The generation worker: one thread owns the policy (`Send`, not `Sync`) and serves jobs from a
//! bounded queue, batching the jobs that wait together and share sampling settings into one
//! `generate` call. Other work on the policy (loading weights, decoding tokens) goes through the
//! same queue as a [`Task`], run in arrival order between batches.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use longrl_core::api::{ChatMessage, Generation, GenerationParams, Policy, PolicyDescription};
use tokio::sync::oneshot;

use super::openai::ApiError;
use super::params::Sampling;

/// A prompt as a request gives it.
#[derive(Debug, Clone)]
pub enum PromptInput {
    Chat(Vec<ChatMessage>),
    Text(String),
    Tokens(Vec<u32>),
}

/// What a job gets back: `n` generations per prompt (prompt i, sample j at `i * n + j`).
#[derive(Debug, Clone)]
pub struct JobOutput {
    pub generations: Vec<Generation>,
    pub prompt_tokens: Vec<Vec<u32>>,
}

struct Job {
    prompts: Vec<PromptInput>,
    sampling: Sampling,
    reply: oneshot::Sender<Result<JobOutput, ApiError>>,
}

/// A closure run on the worker thread with the policy.
pub type Task = Box<dyn FnOnce(&mut dyn Policy) + Send>;

enum Work {
    Generate(Job),
    Task(Task),
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Prompts x samples gathered into one `generate` call at most.
    pub max_batch: usize,
    /// How long the worker waits for more jobs after the first of a batch.
    pub batch_window: Duration,
    /// Jobs waiting at most; more are refused with 503 rather than queued without bound.
    pub queue_capacity: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { max_batch: 32, batch_window: Duration::from_millis(5), queue_capacity: 256 }
    }
}

/// A handle on the worker; clones share it.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    sender: Mutex<Option<SyncSender<Work>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    description: PolicyDescription,
}

impl Engine {
    /// Move the policy into a new worker thread.
    pub fn start(policy: Box<dyn Policy>, options: EngineOptions) -> anyhow::Result<Engine> {
        let description = policy.describe()?;
        let (sender, receiver) = std::sync::mpsc::sync_channel(options.queue_capacity.max(1));
        let (max_context, vocab) = (description.max_position_embeddings, description.vocab_size);
        let thread = std::thread::Builder::new()
            .name("longrl-serve-generate".into())
            .spawn(move || Worker { policy, options, max_context, vocab, next_seed: 0x5eed }.run(receiver))?;
        Ok(Engine {
            inner: Arc::new(Inner { sender: Mutex::new(Some(sender)), thread: Mutex::new(Some(thread)), description }),
        })
    }

    pub fn description(&self) -> &PolicyDescription {
        &self.inner.description
    }

    /// Queue a job and wait for its result.
    pub async fn submit(&self, prompts: Vec<PromptInput>, sampling: Sampling) -> Result<JobOutput, ApiError> {
        let (reply, result) = oneshot::channel();
        self.send(Work::Generate(Job { prompts, sampling, reply }))?;
        result.await.unwrap_or_else(|_| Err(ApiError::unavailable("the generation worker stopped")))
    }

    /// Run `task` on the worker thread with the policy, after the work queued before it.
    pub async fn run<T: Send + 'static>(
        &self,
        task: impl FnOnce(&mut dyn Policy) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, result) = oneshot::channel();
        self.send(Work::Task(Box::new(move |policy: &mut dyn Policy| {
            let _ = reply.send(task(policy));
        })))?;
        result.await.map_err(|_| ApiError::unavailable("the generation worker stopped"))
    }

    fn send(&self, work: Work) -> Result<(), ApiError> {
        let sender = self.inner.sender.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sender) = sender.as_ref() else {
            return Err(ApiError::unavailable("the server is shutting down"));
        };
        match sender.try_send(work) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                Err(ApiError::unavailable("too many requests are waiting; retry later").with_code("overloaded"))
            }
            Err(TrySendError::Disconnected(_)) => Err(ApiError::unavailable("the generation worker stopped")),
        }
    }

    /// Stop taking jobs, let the worker finish those queued, and join it.
    pub fn shutdown(&self) {
        self.inner.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.inner.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

struct Worker {
    policy: Box<dyn Policy>,
    options: EngineOptions,
    max_context: u64,
    vocab: u64,
    next_seed: u64,
}

/// A job ready to run: its prompts tokenized.
struct Ready {
    job: Job,
    tokens: Vec<Vec<u32>>,
}

impl Worker {
    fn run(mut self, receiver: Receiver<Work>) {
        while let Ok(first) = receiver.recv() {
            let first = match first {
                Work::Generate(job) => job,
                Work::Task(task) => {
                    self.task(task);
                    continue;
                }
            };
            let (jobs, task) = self.gather(first, &receiver);
            let mut ready: Vec<Ready> = Vec::new();
            for job in jobs {
                if job.reply.is_closed() {
                    continue; // the client went away
                }
                match self.prepare(&job) {
                    Ok(tokens) => ready.push(Ready { job, tokens }),
                    Err(error) => {
                        let _ = job.reply.send(Err(error));
                    }
                }
            }
            for group in group_by_sampling(ready) {
                self.generate(group);
            }
            if let Some(task) = task {
                self.task(task);
            }
        }
    }

    fn task(&mut self, task: Task) {
        let policy = self.policy.as_mut();
        // A task that panics drops its reply (the caller sees an error); the worker lives on.
        if std::panic::catch_unwind(AssertUnwindSafe(|| task(policy))).is_err() {
            tracing::error!("a task on the policy panicked");
        }
    }

    /// The first job and whatever else arrives within the batch window, up to the batch size; a task
    /// that arrives ends the batch and runs after it.
    fn gather(&self, first: Job, receiver: &Receiver<Work>) -> (Vec<Job>, Option<Task>) {
        let mut size = job_size(&first);
        let mut jobs = vec![first];
        let window_end = Instant::now() + self.options.batch_window;
        while size < self.options.max_batch {
            let remaining = window_end.saturating_duration_since(Instant::now());
            let next =
                if remaining.is_zero() { receiver.try_recv().ok() } else { receiver.recv_timeout(remaining).ok() };
            match next {
                None => break,
                Some(Work::Task(task)) => return (jobs, Some(task)),
                Some(Work::Generate(job)) => {
                    size += job_size(&job);
                    jobs.push(job);
                }
            }
        }
        (jobs, None)
    }

    fn prepare(&mut self, job: &Job) -> Result<Vec<Vec<u32>>, ApiError> {
        let vocab = self.vocab;
        let mut out = Vec::with_capacity(job.prompts.len());
        for prompt in &job.prompts {
            let tokens = match prompt {
                PromptInput::Chat(messages) => {
                    let text = self
                        .policy
                        .apply_chat_template(messages, true)
                        .map_err(|e| ApiError::bad_param("messages", format!("cannot apply the chat template: {e}")))?;
                    // The template already holds the special tokens (BOS included).
                    self.policy.tokenize(&text, false).map_err(|e| ApiError::internal(format!("tokenize: {e}")))?
                }
                PromptInput::Text(text) => {
                    self.policy.tokenize(text, true).map_err(|e| ApiError::internal(format!("tokenize: {e}")))?
                }
                PromptInput::Tokens(tokens) => {
                    if let Some(bad) = tokens.iter().find(|&&t| vocab > 0 && u64::from(t) >= vocab) {
                        return Err(ApiError::bad_param(
                            "prompt",
                            format!("token id {bad} is outside the vocabulary (size {vocab})"),
                        ));
                    }
                    tokens.clone()
                }
            };
            if tokens.is_empty() {
                return Err(ApiError::bad_param("prompt", "the prompt is empty"));
            }
            let needed = tokens.len() as u64 + u64::from(job.sampling.params.max_new_tokens);
            if self.max_context > 0 && needed > self.max_context {
                return Err(ApiError::bad_param(
                    "max_tokens",
                    format!(
                        "this model's maximum context length is {} tokens; the prompt has {} and max_tokens asks for {}",
                        self.max_context,
                        tokens.len(),
                        job.sampling.params.max_new_tokens
                    ),
                )
                .with_code("context_length_exceeded"));
            }
            out.push(tokens);
        }
        Ok(out)
    }

    fn generate(&mut self, group: Vec<Ready>) {
        let mut params: GenerationParams = group[0].job.sampling.params.clone();
        params.seed = group[0].job.sampling.seed.unwrap_or_else(|| {
            self.next_seed = self.next_seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.next_seed
        });
        let prompts: Vec<Vec<u32>> = group.iter().flat_map(|r| r.tokens.iter().cloned()).collect();
        let policy = &mut self.policy;
        // A policy that panics must not take the server down with it.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| policy.generate(&prompts, &params)));
        let n = params.rollouts as usize;
        match result {
            Ok(Ok(output)) if output.generations.len() == prompts.len() * n => {
                let mut generations = output.generations.into_iter();
                for ready in group {
                    let count = ready.tokens.len() * n;
                    let mine: Vec<Generation> = generations.by_ref().take(count).collect();
                    let _ = ready.job.reply.send(Ok(JobOutput { generations: mine, prompt_tokens: ready.tokens }));
                }
            }
            outcome => {
                let message = match outcome {
                    Ok(Ok(output)) => format!(
                        "the policy returned {} generations for {} prompts x n={n}",
                        output.generations.len(),
                        prompts.len()
                    ),
                    Ok(Err(e)) => format!("generation failed: {e}"),
                    Err(_) => "generation panicked".to_string(),
                };
                tracing::error!("{message}");
                for ready in group {
                    let _ = ready.job.reply.send(Err(ApiError::internal(message.clone())));
                }
            }
        }
    }
}

fn job_size(job: &Job) -> usize {
    job.prompts.len() * job.sampling.params.rollouts.max(1) as usize
}

/// Jobs with equal sampling settings (seed included when given) share one `generate` call.
fn group_by_sampling(ready: Vec<Ready>) -> Vec<Vec<Ready>> {
    let mut groups: Vec<Vec<Ready>> = Vec::new();
    for item in ready {
        match groups.iter_mut().find(|g| g[0].job.sampling == item.job.sampling) {
            Some(group) => group.push(item),
            None => groups.push(vec![item]),
        }
    }
    groups
}
