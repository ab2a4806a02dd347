//! Slurm's compressed host lists (`SLURM_JOB_NODELIST`, `SLURM_STEP_NODELIST`) and task counts
//! (`SLURM_TASKS_PER_NODE`), parsed here so a rank needs no `scontrol` to find the first host.
//!
//! Host lists: comma-separated hosts, each a name with bracketed range lists, e.g.
//! `node[01-03,07]`, `gpu[1-2]-ib,login1`, `rack[1-2]-n[01-02]` (every combination, leftmost
//! varying slowest). A range's numbers keep the width of its lower bound (`[08-10]` → 08, 09, 10),
//! as Slurm writes them. Task counts: `2(x3),1` → 2, 2, 2, 1.

use std::fmt;

/// A malformed host list or task count, with the text it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub text: String,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.text, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Hosts in a list longer than this are refused (a typo such as `n[1-99999999]`).
const MAX_HOSTS: usize = 1 << 20;

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    /// The numbers of one bracket, each as written (zero-padded to its range's width).
    Choices(Vec<Range>),
}

#[derive(Debug, Clone, Copy)]
struct Range {
    lo: u64,
    hi: u64,
    width: usize,
}

impl Range {
    fn len(&self) -> usize {
        (self.hi - self.lo + 1) as usize
    }
    fn nth(&self, i: usize) -> String {
        format!("{:0width$}", self.lo + i as u64, width = self.width)
    }
}

/// Every host of a compressed list, in Slurm's order.
pub fn expand(list: &str) -> Result<Vec<String>, ParseError> {
    let mut hosts = Vec::new();
    for item in split_top_level(list)? {
        let parts = parse_item(list, item)?;
        let count = parts.iter().try_fold(1usize, |n, p| match p {
            Part::Text(_) => Some(n),
            Part::Choices(ranges) => n.checked_mul(ranges.iter().map(Range::len).sum()),
        });
        if count.is_none_or(|c| hosts.len() + c > MAX_HOSTS) {
            return Err(error(list, format!("expands to more than {MAX_HOSTS} hosts")));
        }
        let mut names = vec![String::new()];
        for part in &parts {
            names = match part {
                Part::Text(text) => names.into_iter().map(|n| n + text).collect(),
                Part::Choices(ranges) => names
                    .iter()
                    .flat_map(|n| {
                        ranges.iter().flat_map(move |r| (0..r.len()).map(move |i| format!("{n}{}", r.nth(i))))
                    })
                    .collect(),
            };
        }
        hosts.extend(names);
    }
    Ok(hosts)
}

/// The first host of a compressed list (where rank 0 of a Slurm step runs).
pub fn first_host(list: &str) -> Result<String, ParseError> {
    let first = split_top_level(list)?.into_iter().next().ok_or_else(|| error(list, "is empty".into()))?;
    let mut host = String::new();
    for part in parse_item(list, first)? {
        match part {
            Part::Text(text) => host.push_str(&text),
            Part::Choices(ranges) => host.push_str(&ranges[0].nth(0)),
        }
    }
    Ok(host)
}

/// Tasks per node, one entry per node: `2(x3),1` → [2, 2, 2, 1].
pub fn expand_tasks_per_node(text: &str) -> Result<Vec<usize>, ParseError> {
    let mut counts = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        let (count, repeat) = match item.split_once("(x") {
            Some((count, rest)) => {
                let repeat = rest.strip_suffix(')').ok_or_else(|| error(text, format!("{item:?} lacks ')'")))?;
                (count, number(text, repeat)? as usize)
            }
            None => (item, 1),
        };
        let count = number(text, count)? as usize;
        if counts.len() + repeat > MAX_HOSTS {
            return Err(error(text, format!("counts more than {MAX_HOSTS} nodes")));
        }
        counts.extend(std::iter::repeat_n(count, repeat));
    }
    Ok(counts)
}

fn error(text: &str, reason: String) -> ParseError {
    ParseError { text: text.to_owned(), reason }
}

fn number(text: &str, digits: &str) -> Result<u64, ParseError> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(error(text, format!("{digits:?} is not a number")));
    }
    digits.parse().map_err(|_| error(text, format!("{digits:?} is too large")))
}

/// Splits at commas outside brackets.
fn split_top_level(list: &str) -> Result<Vec<&str>, ParseError> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in list.char_indices() {
        match c {
            '[' if depth == 0 => depth = 1,
            '[' => return Err(error(list, "has nested brackets".into())),
            ']' if depth == 1 => depth = 0,
            ']' => return Err(error(list, "has a ']' without '['".into())),
            ',' if depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(error(list, "has a '[' without ']'".into()));
    }
    items.push(&list[start..]);
    if items.iter().any(|item| item.trim().is_empty()) {
        return Err(error(list, "has an empty host name".into()));
    }
    Ok(items.into_iter().map(str::trim).collect())
}

fn parse_item(list: &str, item: &str) -> Result<Vec<Part>, ParseError> {
    let mut parts = Vec::new();
    let mut rest = item;
    while !rest.is_empty() {
        match rest.find('[') {
            Some(open) => {
                if open > 0 {
                    parts.push(Part::Text(rest[..open].to_owned()));
                }
                let close =
                    rest[open..].find(']').map(|c| open + c).ok_or_else(|| error(list, "unclosed '['".into()))?;
                parts.push(Part::Choices(parse_ranges(list, &rest[open + 1..close])?));
                rest = &rest[close + 1..];
            }
            None => {
                parts.push(Part::Text(rest.to_owned()));
                rest = "";
            }
        }
    }
    Ok(parts)
}

fn parse_ranges(list: &str, inside: &str) -> Result<Vec<Range>, ParseError> {
    inside
        .split(',')
        .map(|range| {
            let range = range.trim();
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            let (lo_n, hi_n) = (number(list, lo)?, number(list, hi)?);
            if hi_n < lo_n {
                return Err(error(list, format!("range {range:?} runs backwards")));
            }
            Ok(Range { lo: lo_n, hi: hi_n, width: lo.len() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &str) -> Vec<String> {
        expand(list).unwrap()
    }

    #[test]
    fn plain_names_and_comma_lists() {
        assert_eq!(hosts("node7"), ["node7"]);
        assert_eq!(hosts("a1,b2, c3"), ["a1", "b2", "c3"]);
        assert_eq!(first_host("login-2.cluster,node1").unwrap(), "login-2.cluster");
    }

    #[test]
    fn bracket_ranges_keep_zero_padding() {
        assert_eq!(hosts("node[01-03,07]"), ["node01", "node02", "node03", "node07"]);
        assert_eq!(hosts("n[8-10]"), ["n8", "n9", "n10"]);
        assert_eq!(hosts("n[098-100]"), ["n098", "n099", "n100"]);
        assert_eq!(first_host("node[01-03,07]").unwrap(), "node01");
        assert_eq!(first_host("gpu[12,3-4]").unwrap(), "gpu12");
    }

    #[test]
    fn several_groups_suffixes_and_brackets_in_one_name() {
        assert_eq!(hosts("node[1-2],gpu[5,7]-ib,login"), ["node1", "node2", "gpu5-ib", "gpu7-ib", "login"]);
        assert_eq!(hosts("r[1-2]-n[01-02]"), ["r1-n01", "r1-n02", "r2-n01", "r2-n02"]);
        assert_eq!(first_host("r[3-4]-n[09-10].ib").unwrap(), "r3-n09.ib");
    }

    #[test]
    fn malformed_lists_are_refused_with_the_reason() {
        for bad in ["", "node[1-3", "node1-3]", "n[3-1]", "n[a-b]", "n[[1]]", "a,,b", "n[1-99999999]"] {
            let err = expand(bad).unwrap_err();
            assert_eq!(err.text, bad);
            assert!(!err.reason.is_empty());
        }
        assert!(first_host("").is_err());
    }

    #[test]
    fn tasks_per_node_repeat_counts() {
        assert_eq!(expand_tasks_per_node("2(x3),1").unwrap(), [2, 2, 2, 1]);
        assert_eq!(expand_tasks_per_node("8").unwrap(), [8]);
        assert!(expand_tasks_per_node("2(x3").is_err());
        assert!(expand_tasks_per_node("x").is_err());
    }
}
