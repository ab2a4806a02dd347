//! Parameter groups and their flat layout.
//!
//! A group is a list of parameters with its own learning-rate multiplier and weight decay. The
//! optimizer keeps each group's state in flat float32 buffers (moments, and master weights for
//! reduced-precision parameters), parameter after parameter in the group's order, as DeepSpeed's
//! and FSDP's flat parameters do. [`GroupLayout`] says where each parameter lies in those buffers,
//! so a sharded optimizer (ZeRO-2/3) that owns elements `[a, b)` of a group's flat space finds the
//! parameter pieces it updates with [`GroupLayout::segments`].

use std::ops::Range;

use tch::Tensor;

/// Parameters that share optimizer settings.
pub struct ParamGroup {
    /// Names this group in errors and checkpoints (`decay`, `no_decay`, ...).
    pub name: String,
    /// `(name, tensor)` pairs sharing storage and `.grad` with the model; one dtype and device.
    pub params: Vec<(String, Tensor)>,
    /// Multiplies the learning rate passed to each step.
    pub lr_scale: f64,
    /// Decoupled weight decay of this group (AdamW's `weight_decay`).
    pub weight_decay: f64,
}

impl ParamGroup {
    /// One group of every parameter.
    pub fn all(params: Vec<(String, Tensor)>, weight_decay: f64) -> ParamGroup {
        ParamGroup { name: "all".into(), params, lr_scale: 1.0, weight_decay }
    }

    /// The usual split of HF Trainer, nanoGPT and Megatron: matrices and embeddings (2 or more
    /// dimensions) decay, vectors (norm weights, biases) do not. Empty groups are left out.
    pub fn split_decay(params: Vec<(String, Tensor)>, weight_decay: f64) -> Vec<ParamGroup> {
        let (decay, no_decay): (Vec<_>, Vec<_>) = params.into_iter().partition(|(_, p)| p.dim() >= 2);
        [("decay", decay, weight_decay), ("no_decay", no_decay, 0.0)]
            .into_iter()
            .filter(|(_, params, _)| !params.is_empty())
            .map(|(name, params, weight_decay)| ParamGroup { name: name.into(), params, lr_scale: 1.0, weight_decay })
            .collect()
    }
}

/// Where each parameter of a group lies in the group's flat buffers: parameter `i` occupies
/// elements `offsets[i]..offsets[i + 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLayout {
    names: Vec<String>,
    shapes: Vec<Vec<i64>>,
    offsets: Vec<i64>,
}

/// The piece of parameter `param` that lies in a range of the flat space: its elements
/// `param_elements` (of the flattened parameter) are the flat elements `flat_elements`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub param: usize,
    pub param_elements: Range<i64>,
    pub flat_elements: Range<i64>,
}

impl GroupLayout {
    pub fn new(params: impl IntoIterator<Item = (String, Vec<i64>)>) -> GroupLayout {
        let mut layout = GroupLayout { names: Vec::new(), shapes: Vec::new(), offsets: vec![0] };
        for (name, shape) in params {
            let end = layout.numel() + shape.iter().product::<i64>();
            layout.names.push(name);
            layout.shapes.push(shape);
            layout.offsets.push(end);
        }
        layout
    }

    /// Elements of the flat space (all parameters together).
    pub fn numel(&self) -> i64 {
        *self.offsets.last().expect("offsets start with 0")
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn shapes(&self) -> &[Vec<i64>] {
        &self.shapes
    }

    /// The flat elements of parameter `i`.
    pub fn range(&self, i: usize) -> Range<i64> {
        self.offsets[i]..self.offsets[i + 1]
    }

    /// The parameter pieces in flat elements `range` (clamped to the flat space), in order;
    /// empty parameters and empty overlaps are left out.
    pub fn segments(&self, range: Range<i64>) -> Vec<Segment> {
        let (start, end) = (range.start.max(0), range.end.min(self.numel()));
        // The first parameter whose end lies beyond `start`.
        let first = self.offsets[1..].partition_point(|&e| e <= start);
        let mut out = Vec::new();
        for i in first..self.len() {
            let r = self.range(i);
            if r.start >= end {
                break;
            }
            let (a, b) = (r.start.max(start), r.end.min(end));
            if a < b {
                out.push(Segment { param: i, param_elements: a - r.start..b - r.start, flat_elements: a..b });
            }
        }
        out
    }

    /// Views of `flat` (a buffer of this layout) shaped as each parameter.
    pub fn views(&self, flat: &Tensor) -> anyhow::Result<Vec<Tensor>> {
        (0..self.len())
            .map(|i| {
                let r = self.range(i);
                Ok(flat.f_narrow(0, r.start, r.end - r.start)?.f_view(self.shapes[i].as_slice())?)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn layout() -> GroupLayout {
        GroupLayout::new([
            ("a".into(), vec![2, 3]),
            ("empty".into(), vec![0]),
            ("b".into(), vec![4]),
            ("c".into(), vec![]),
        ])
    }

    #[test]
    fn offsets_follow_the_parameter_order() {
        let l = layout();
        assert_eq!(l.numel(), 11, "2x3 + 0 + 4 + 1");
        assert_eq!((l.range(0), l.range(1), l.range(2), l.range(3)), (0..6, 6..6, 6..10, 10..11));
    }

    /// A rank owning [4, 8) of the group updates the tail of `a` and the head of `b`; shards that
    /// tile the flat space cover every element of every parameter exactly once.
    #[test]
    fn segments_of_a_shard() {
        let l = layout();
        assert_eq!(
            l.segments(4..8),
            vec![
                Segment { param: 0, param_elements: 4..6, flat_elements: 4..6 },
                Segment { param: 2, param_elements: 0..2, flat_elements: 6..8 },
            ]
        );
        for shards in 1..=5i64 {
            let per = (l.numel() + shards - 1) / shards;
            let mut covered = vec![0u32; l.numel() as usize];
            for s in 0..shards {
                for seg in l.segments(s * per..(s + 1) * per) {
                    let r = l.range(seg.param);
                    assert_eq!(seg.flat_elements.start - r.start, seg.param_elements.start);
                    for e in seg.flat_elements {
                        covered[e as usize] += 1;
                    }
                }
            }
            assert!(covered.iter().all(|&c| c == 1), "{shards} shards: {covered:?}");
        }
        assert!(l.segments(11..20).is_empty());
    }

    #[test]
    fn views_share_the_flat_buffer() {
        let l = layout();
        let flat = Tensor::zeros([l.numel()], (Kind::Float, Device::Cpu));
        let views = l.views(&flat).unwrap();
        assert_eq!(views[0].size(), vec![2, 3]);
        assert_eq!(views[3].size(), Vec::<i64>::new());
        let _ = views[2].shallow_clone().fill_(2.0);
        assert_eq!(flat.sum(Kind::Float).double_value(&[]), 8.0);
    }

    #[test]
    fn split_decay_keeps_vectors_out_of_decay() {
        let t = |shape: &[i64]| Tensor::zeros(shape, (Kind::Float, Device::Cpu));
        let groups = ParamGroup::split_decay(
            vec![("w".into(), t(&[2, 2])), ("norm".into(), t(&[2])), ("emb".into(), t(&[3, 2]))],
            0.1,
        );
        let names: Vec<_> = groups.iter().map(|g| (g.name.as_str(), g.params.len(), g.weight_decay)).collect();
        assert_eq!(names, vec![("decay", 2, 0.1), ("no_decay", 1, 0.0)]);
    }
}
