//! Middle truncation, as the reference harness does: keep the first and last halves of the budget.

/// Keep `limit` items: the first `limit / 2` and the last `limit - limit / 2`. Shorter inputs are
/// returned whole.
pub fn truncate_middle<T: Clone>(items: &[T], limit: usize) -> Vec<T> {
    if items.len() <= limit {
        return items.to_vec();
    }
    let head = limit / 2;
    let tail = limit - head;
    let mut out = Vec::with_capacity(limit);
    out.extend_from_slice(&items[..head]);
    out.extend_from_slice(&items[items.len() - tail..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_first_and_last_halves_exactly() {
        let v: Vec<u32> = (0..10).collect();
        assert_eq!(truncate_middle(&v, 4), vec![0, 1, 8, 9]);
        assert_eq!(truncate_middle(&v, 5), vec![0, 1, 7, 8, 9]);
        assert_eq!(truncate_middle(&v, 10), v);
        assert_eq!(truncate_middle(&v, 0), Vec::<u32>::new());
    }
}
