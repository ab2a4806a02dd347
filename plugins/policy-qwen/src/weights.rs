//! Where a model's tensors come from while it is built, as candle's `VarBuilder`: the model asks
//! for each tensor by its checkpoint name (spelled once, in the model's constructor, by nesting
//! prefixes) and shape; the source reads it from a checkpoint or makes it. The names asked for, in
//! order, are the model's parameter list.

use std::cell::RefCell;
use std::rc::Rc;

use longrl_core::{Error, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use tch::{Device, Kind, Tensor};

/// How HF initialises a tensor of this role (used by random sources).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// normal(0, initializer_range): projections and embeddings.
    Normal,
    /// 1: norm weights.
    Ones,
    /// 0: biases.
    Zeros,
}

/// Gives the tensor called `name` with `shape`, already in the model's dtype and device.
pub trait WeightSource {
    fn get(&mut self, name: &str, shape: &[i64], init: Init) -> Result<Tensor>;
    /// After the model has asked for everything: whatever went wrong, as one error.
    fn finish(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

/// A prefix into a [`WeightSource`]; records every tensor handed out.
#[derive(Clone)]
pub struct Vars {
    prefix: String,
    state: Rc<RefCell<State>>,
}

struct State {
    source: Box<dyn WeightSource>,
    params: Vec<(String, Tensor)>,
}

impl Vars {
    pub fn new(source: impl WeightSource + 'static) -> Vars {
        Vars { prefix: String::new(), state: Rc::new(RefCell::new(State { source: Box::new(source), params: vec![] })) }
    }

    /// The prefix `self.name`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Vars {
        let prefix = if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        Vars { prefix, state: self.state.clone() }
    }

    pub fn get(&self, name: &str, shape: &[i64], init: Init) -> Result<Tensor> {
        let full = if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        let mut state = self.state.borrow_mut();
        let t = state.source.get(&full, shape, init)?;
        if t.size() != shape {
            return Err(Error::msg(format!("tensor `{full}` has shape {:?}, expected {shape:?}", t.size())));
        }
        state.params.push((full, t.shallow_clone()));
        Ok(t)
    }

    /// Every tensor handed out, by full name, in order, once the source found nothing wrong.
    pub fn finish(self) -> Result<Vec<(String, Tensor)>> {
        let state = Rc::try_unwrap(self.state)
            .map_err(|_| Error::msg("internal: Vars still shared when finished"))?
            .into_inner();
        state.source.finish()?;
        Ok(state.params)
    }
}

/// HF's initialisation, seeded: normal(0, 0.02) in the order asked, ones and zeros as their role says.
pub struct RandomSource {
    rng: ChaCha8Rng,
    normal: Normal<f32>,
    kind: Kind,
    device: Device,
}

impl RandomSource {
    pub fn new(seed: u64, kind: Kind, device: Device) -> Result<RandomSource> {
        Ok(RandomSource {
            rng: ChaCha8Rng::seed_from_u64(seed),
            normal: Normal::new(0.0f32, 0.02).map_err(Error::msg)?,
            kind,
            device,
        })
    }
}

impl WeightSource for RandomSource {
    fn get(&mut self, _name: &str, shape: &[i64], init: Init) -> Result<Tensor> {
        let numel = shape.iter().product::<i64>() as usize;
        let values: Vec<f32> = match init {
            Init::Ones => vec![1.0; numel],
            Init::Zeros => vec![0.0; numel],
            Init::Normal => (0..numel).map(|_| self.normal.sample(&mut self.rng)).collect(),
        };
        Ok(Tensor::from_slice(&values).f_view(shape)?.f_to(self.device)?.f_to_kind(self.kind)?)
    }
}
