//! The generator's closed vocabulary. It is fixed (not seeded) and small, so a BPE of a few thousand
//! tokens makes every name, place and number a single token and a tiny model sees each one often.

/// People: a base name and its near-duplicate (one vowel changed) sit side by side, so
/// `PEOPLE[2k]` and `PEOPLE[2k + 1]` are the distractor pair `Tavor` / `Tavir`.
pub fn people() -> Vec<String> {
    const ONSETS: [&str; 10] = ["B", "D", "F", "G", "K", "L", "M", "N", "R", "T"];
    const FIRST: [&str; 4] = ["a", "e", "o", "u"];
    const MIDDLE: [&str; 4] = ["l", "r", "v", "n"];
    const SECOND: [(&str, &str); 2] = [("o", "i"), ("a", "e")];
    const CODAS: [&str; 2] = ["r", "k"];
    let mut names = Vec::new();
    for onset in ONSETS {
        for first in FIRST {
            for middle in MIDDLE {
                for (second, twin) in SECOND {
                    for coda in CODAS {
                        names.push(format!("{onset}{first}{middle}{second}{coda}"));
                        names.push(format!("{onset}{first}{middle}{twin}{coda}"));
                    }
                }
            }
        }
    }
    names
}

/// Towns: the usual answer of lookup and two-hop questions.
pub fn towns() -> Vec<String> {
    const HEADS: [&str; 8] = ["Ash", "Bram", "Cor", "Dun", "Elm", "Fen", "Gal", "Hol"];
    const TAILS: [&str; 5] = ["ford", "mere", "holt", "wick", "dale"];
    HEADS.iter().flat_map(|h| TAILS.iter().map(move |t| format!("{h}{t}"))).collect()
}

pub const COLORS: [&str; 10] = ["red", "blue", "green", "amber", "violet", "gray", "white", "black", "teal", "gold"];

/// Things people own in counted numbers (numeric questions add or subtract two counts).
pub const ITEMS: [&str; 8] = ["lamps", "boats", "goats", "drums", "kites", "bells", "coins", "maps"];

/// Counts stated in documents; sums stay below 100.
pub const MIN_COUNT: u32 = 2;
pub const MAX_COUNT: u32 = 49;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_twins_differ_by_one_letter() {
        let people = people();
        let mut sorted = people.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), people.len());
        for pair in people.chunks(2) {
            let diff = pair[0].chars().zip(pair[1].chars()).filter(|(a, b)| a != b).count();
            assert_eq!(diff, 1, "{pair:?}");
        }
        let towns = towns();
        assert!(towns.iter().all(|t| !people.contains(t)));
    }
}
