//! The SFT warm-up: cross-entropy on response tokens only (the masked mean of `-logprobs`),
//! length-bucketed batches in a seeded order per epoch, gradient accumulation over micro-batches.

use std::collections::BTreeMap;
use std::time::Instant;

use longrl_core::api::{LogprobOptions, Sequence};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use tch::Kind;

use longrl_metrics::Record;

use crate::optim::{self, StepOutcome};
use crate::schedule::lr_at;
use crate::seeds;
use crate::trainer::{Outcome, Trainer};

impl Trainer<'_> {
    /// Batches of sequence indices of similar total length (sorted by length, then cut).
    pub(super) fn sft_batches(&self) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.sft_data.len()).collect();
        order.sort_by_key(|&i| (self.sft_data[i].prompt.len() + self.sft_data[i].response.len(), i));
        order.chunks(self.opts.sft.batch_size.max(1) as usize).map(<[usize]>::to_vec).collect()
    }

    /// The order of batches in `epoch`: a function of (seed, epoch) alone, so resume needs no RNG state.
    fn sft_epoch_order(&self, epoch: u32) -> Vec<Vec<usize>> {
        let mut batches = self.sft_batches();
        let mut rng =
            rand_chacha::ChaCha8Rng::seed_from_u64(seeds::derive(self.opts.seed, "sft-epoch", epoch as u64, 0));
        batches.shuffle(&mut rng);
        batches
    }

    pub(super) fn run_sft(&mut self) -> anyhow::Result<Outcome> {
        if self.counters.optimizer_stage.as_deref() != Some("sft") {
            self.optimizer = Some(optim::adamw(self.c.policy.parameters()?, &self.opts.sft.optim)?);
            self.counters.optimizer_stage = Some("sft".into());
            self.counters.optimizer_steps = 0;
        }
        let total = self.sft_total_steps();
        tracing::info!(traces = self.sft_data.len(), steps = total, "SFT warm-up");
        while self.counters.sft_epoch < self.opts.sft.epochs {
            let order = self.sft_epoch_order(self.counters.sft_epoch);
            while self.counters.sft_batch < order.len() {
                let batch: Vec<Sequence> =
                    order[self.counters.sft_batch].iter().map(|&i| self.sft_data[i].clone()).collect();
                let values = self.sft_step(&batch, total)?;
                self.counters.sft_batch += 1;
                self.counters.sft_steps += 1;
                self.counters.global_step += 1;
                let mut values = values;
                values.insert("epoch".into(), self.counters.sft_epoch as f64);
                let record = Record {
                    step: self.counters.global_step,
                    stage: "sft".into(),
                    phase: None,
                    phase_name: None,
                    values,
                };
                if self.after_step(record)? {
                    return Ok(Outcome::Stopped);
                }
            }
            self.counters.sft_epoch += 1;
            self.counters.sft_batch = 0;
        }
        self.counters.sft_done = true;
        self.end_stage("sft")?;
        Ok(Outcome::Finished)
    }

    fn sft_step(&mut self, batch: &[Sequence], total_steps: u64) -> anyhow::Result<BTreeMap<String, f64>> {
        let start = Instant::now();
        let tokens: usize = batch.iter().map(|s| s.response.len()).sum();
        let processed: usize = batch.iter().map(|s| s.prompt.len() + s.response.len()).sum();
        let options = LogprobOptions {
            with_grad: true,
            entropy: false,
            chunk_tokens: self.opts.train.logprob_chunk_tokens,
            temperature: 1.0,
        };
        let opt = self.optimizer.as_mut().expect("SFT optimizer");
        opt.zero_grad()?;
        let mut nll_sum = 0.0f64;
        for micro in batch.chunks(self.opts.sft.micro_batch_size.max(1) as usize) {
            let out = self.c.policy.logprobs(micro, &options)?;
            let mask = out.mask.f_to_kind(Kind::Float)?;
            // Sum over the micro-batch divided by the whole batch's tokens: the accumulated
            // gradient is that of the batch's token-mean cross-entropy.
            let nll = out.logprobs.f_to_kind(Kind::Float)?.f_mul(&mask)?.f_sum(Kind::Float)?.f_neg()?;
            let loss = nll.f_div_scalar(tokens as f64)?;
            loss.f_backward()?;
            nll_sum += nll.f_double_value(&[])?;
        }
        let grad_norm = opt.clip_grad_norm(self.opts.sft.optim.grad_clip)?;
        let lr = lr_at(&self.opts.sft.optim, self.counters.sft_steps, total_steps);
        let skipped = opt.step(lr)? == StepOutcome::SkippedNonFinite;
        let seconds = start.elapsed().as_secs_f64();
        let mut v = BTreeMap::new();
        v.insert("loss".into(), nll_sum / tokens as f64);
        v.insert("grad_norm".into(), grad_norm);
        v.insert("nonfinite_grad_skipped".into(), if skipped { 1.0 } else { 0.0 });
        v.insert("lr".into(), lr);
        v.insert("sequences".into(), batch.len() as f64);
        v.insert("response_tokens".into(), tokens as f64);
        v.insert("train_tokens_per_s".into(), processed as f64 / seconds.max(1e-9));
        v.insert("time/step".into(), seconds);
        Ok(v)
    }
}
