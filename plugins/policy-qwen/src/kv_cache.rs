//! Generation's key/value caches. A prompt's keys and values are held once, however many rollouts
//! continue it ([`PromptCache`]); each rollout's own tokens go to its row of a [`RowCache`]. Both
//! are allocated once per generation and written in place.

use longrl_core::Result;
use tch::{Device, Kind, Tensor};

/// Per layer, keys and values `[batch, kv_heads, capacity, head_dim]`.
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl KvCache {
    pub fn new(layers: usize, shape: [i64; 4], kind: Kind, device: Device) -> Result<KvCache> {
        let zeros =
            || -> Result<Vec<Tensor>> { (0..layers).map(|_| Ok(Tensor::f_zeros(shape, (kind, device))?)).collect() };
        Ok(KvCache { k: zeros()?, v: zeros()? })
    }

    /// Write `k`, `v` `[batch, kv_heads, T, D]` of `layer` at columns `[at, at + T)`.
    pub fn write(&self, layer: usize, at: i64, k: &Tensor, v: &Tensor) -> Result<()> {
        let t = k.size()[2];
        self.k[layer].f_narrow(2, at, t)?.f_copy_(k)?;
        self.v[layer].f_narrow(2, at, t)?.f_copy_(v)?;
        Ok(())
    }

    /// Keys and values of `layer`, rows `[row, row + rows)`, columns `[0, len)` (views).
    pub fn read(&self, layer: usize, row: i64, rows: i64, len: i64) -> Result<(Tensor, Tensor)> {
        let view = |t: &Tensor| -> Result<Tensor> { Ok(t.f_narrow(0, row, rows)?.f_narrow(2, 0, len)?) };
        Ok((view(&self.k[layer])?, view(&self.v[layer])?))
    }

    /// Keep only the rows `index` (int64 on the cache's device), in that order.
    pub fn select_rows(&mut self, index: &Tensor) -> Result<()> {
        for t in self.k.iter_mut().chain(self.v.iter_mut()) {
            *t = t.f_index_select(0, index)?;
        }
        Ok(())
    }
}

/// One prompt's cache: batch 1, capacity the prompt's length.
pub type PromptCache = KvCache;
/// The rollouts' own tokens: one row per rollout, capacity the new tokens.
pub type RowCache = KvCache;
