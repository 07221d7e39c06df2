//! Text: one example per line of a UTF-8 file, as token ids under a
//! character- or word-level vocabulary built from the training lines, and
//! a built-in synthetic set of sentences from a small grammar (the
//! offline default, as the synthetic digits are for images).
//!
//! Ids 0..4 are the special tokens `<pad>`, `<bos>`, `<eos>` and `<unk>`;
//! a token of the held-out lines the training lines never had is `<unk>`.
//! The vocabulary travels with a model's checkpoint as text
//! ([`Vocab::to_text`] / [`Vocab::from_text`]), so sampling needs only the
//! checkpoint.
//!
//! Bad input: bytes that are not UTF-8 are an error naming the line; an
//! empty file, a file with no non-empty lines, a range past the lines and
//! a vocabulary of specials only are errors. Empty lines and lines longer
//! than the maximum length are skipped and counted ([`Lines::skipped`]),
//! as a documented choice: real text has them and they are not examples.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use rand::seq::IndexedRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

/// The padding id (also the loss's ignored target).
pub const PAD: usize = 0;
/// Begin of sentence: the decoder's first input.
pub const BOS: usize = 1;
/// End of sentence: the decoder's last target.
pub const EOS: usize = 2;
/// A token the vocabulary does not have.
pub const UNK: usize = 3;
const SPECIALS: [&str; 4] = ["<pad>", "<bos>", "<eos>", "<unk>"];

/// How a line splits into tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Every Unicode scalar value is a token.
    Char,
    /// Words separated by whitespace.
    Word,
}

impl Level {
    pub fn tokens(self, line: &str) -> Vec<&str> {
        match self {
            Level::Char => line
                .char_indices()
                .map(|(i, c)| &line[i..i + c.len_utf8()])
                .collect(),
            Level::Word => line.split_whitespace().collect(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Char => "char",
            Level::Word => "word",
        }
    }

    /// The tokens joined back into text.
    pub fn join(self, tokens: &[&str]) -> String {
        match self {
            Level::Char => tokens.concat(),
            Level::Word => tokens.join(" "),
        }
    }
}

/// Tokens and their ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    pub level: Level,
    tokens: Vec<String>,
    ids: HashMap<String, usize>,
}

impl Vocab {
    /// The specials, then every token of `lines` in order of first
    /// appearance (so the same lines give the same ids).
    pub fn build<'a>(level: Level, lines: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut v = Vocab {
            level,
            tokens: Vec::new(),
            ids: HashMap::new(),
        };
        SPECIALS.iter().for_each(|s| v.push(s));
        for line in lines {
            for t in level.tokens(line) {
                if !v.ids.contains_key(t) {
                    v.push(t);
                }
            }
        }
        if v.len() == SPECIALS.len() {
            return Err(Error::Invalid {
                op: "vocabulary",
                msg: "the training lines have no tokens".into(),
            });
        }
        Ok(v)
    }

    fn push(&mut self, t: &str) {
        self.ids.insert(t.to_string(), self.tokens.len());
        self.tokens.push(t.to_string());
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The ids of a line's tokens (unknown ones `<unk>`), without `<bos>`
    /// and `<eos>`.
    pub fn encode(&self, line: &str) -> Vec<usize> {
        let tokens = self.level.tokens(line);
        tokens
            .iter()
            .map(|t| self.ids.get(*t).copied().unwrap_or(UNK))
            .collect()
    }

    /// The text of ids, up to the first `<eos>`; `<bos>` and `<pad>` are
    /// dropped, `<unk>` is written as such.
    pub fn decode(&self, ids: &[usize]) -> String {
        let tokens: Vec<&str> = ids
            .iter()
            .take_while(|&&i| i != EOS)
            .filter(|&&i| i != BOS && i != PAD)
            .map(|&i| self.tokens.get(i).map_or("<unk>", String::as_str))
            .collect();
        self.level.join(&tokens)
    }

    /// The vocabulary as text: the level, then one token per line (a
    /// token never holds a newline: lines are split on them).
    pub fn to_text(&self) -> String {
        let mut out = self.level.name().to_string();
        for t in &self.tokens[SPECIALS.len()..] {
            out.push('\n');
            out.push_str(t);
        }
        out
    }

    /// The vocabulary [`Vocab::to_text`] wrote.
    pub fn from_text(text: &str) -> Result<Self> {
        let bad = |msg: String| Error::Invalid {
            op: "vocabulary",
            msg,
        };
        let mut lines = text.split('\n');
        let level = match lines.next() {
            Some("char") => Level::Char,
            Some("word") => Level::Word,
            other => return Err(bad(format!("unknown level {other:?}"))),
        };
        let mut v = Vocab {
            level,
            tokens: Vec::new(),
            ids: HashMap::new(),
        };
        SPECIALS.iter().for_each(|s| v.push(s));
        for t in lines {
            if t.is_empty() || v.ids.contains_key(t) {
                return Err(bad(format!("token {t:?} is empty or repeated")));
            }
            v.push(t);
        }
        if v.len() == SPECIALS.len() {
            return Err(bad("no tokens".into()));
        }
        Ok(v)
    }
}

/// The usable lines of a text and what was skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Lines {
    pub lines: Vec<String>,
    /// Skipped: empty (or whitespace-only) lines.
    pub empty: usize,
    /// Skipped: lines of more tokens than the maximum.
    pub too_long: usize,
}

impl Lines {
    pub fn skipped(&self) -> usize {
        self.empty + self.too_long
    }
}

/// The lines of `bytes` (read from `path`, for messages): non-empty lines
/// of at most `max_len` tokens; an error for bytes that are not UTF-8 (the
/// line named) or a text with no usable line.
pub fn lines(path: &Path, bytes: &[u8], level: Level, max_len: usize) -> Result<Lines> {
    let bad = |msg: String| Error::BadFile {
        path: path.to_path_buf(),
        msg,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        bad(format!("not UTF-8 text: line {line} has invalid bytes"))
    })?;
    let mut out = Lines {
        lines: Vec::new(),
        empty: 0,
        too_long: 0,
    };
    for line in text.lines() {
        let n = level.tokens(line).len();
        if line.trim().is_empty() {
            out.empty += 1;
        } else if n > max_len {
            out.too_long += 1;
        } else {
            out.lines.push(line.to_string());
        }
    }
    if out.lines.is_empty() {
        return Err(bad(format!(
            "no usable lines ({} empty, {} longer than {max_len} tokens)",
            out.empty, out.too_long
        )));
    }
    Ok(out)
}

/// A training and a held-out part of the lines, by ranges, with the
/// vocabulary built from the training part.
#[derive(Debug, Clone)]
pub struct TextSet {
    pub vocab: Vocab,
    /// Token ids per line (no `<bos>` / `<eos>`).
    pub train: Vec<Vec<usize>>,
    pub held_out: Vec<Vec<usize>>,
    /// The longest line, in tokens.
    pub max_len: usize,
}

impl TextSet {
    /// `train` and `held_out` index `lines` (a range past them is an error).
    pub fn split(
        lines: &[String],
        level: Level,
        train: Range<usize>,
        held_out: Range<usize>,
    ) -> Result<Self> {
        for (what, r) in [("training", &train), ("held-out", &held_out)] {
            if r.start >= r.end || r.end > lines.len() {
                return Err(Error::Invalid {
                    op: "text",
                    msg: format!(
                        "{what} lines {}..{} are not within the {} lines",
                        r.start,
                        r.end,
                        lines.len()
                    ),
                });
            }
        }
        let vocab = Vocab::build(level, lines[train.clone()].iter().map(String::as_str))?;
        let encode = |r: Range<usize>| lines[r].iter().map(|l| vocab.encode(l)).collect::<Vec<_>>();
        let (train, held_out) = (encode(train), encode(held_out));
        let max_len = train
            .iter()
            .chain(&held_out)
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        Ok(TextSet {
            vocab,
            train,
            held_out,
            max_len,
        })
    }

    /// The first `fraction` of the lines for training, the rest held out
    /// (docs/text.md: 90% of Tiny Shakespeare's non-empty lines).
    pub fn split_fraction(lines: &[String], level: Level, fraction: f64) -> Result<Self> {
        let cut =
            ((lines.len() as f64 * fraction) as usize).clamp(1, lines.len().saturating_sub(1));
        Self::split(lines, level, 0..cut, cut..lines.len())
    }
}

/// Lines as a [`crate::Dataset`], so the loader shuffles, batches and
/// resumes them as it does images: an item is its line's length (shape
/// `[1]`); a trainer reads the lines of a batch by its indices.
#[derive(Debug, Clone)]
pub struct LineSet {
    pub lines: Vec<Vec<usize>>,
}

impl crate::Dataset for LineSet {
    fn len(&self) -> usize {
        self.lines.len()
    }

    fn item_shape(&self) -> Vec<usize> {
        vec![1]
    }

    fn num_classes(&self) -> Option<usize> {
        None
    }

    fn label(&self, _i: usize) -> Option<usize> {
        None
    }

    fn gather(&self, indices: &[usize], _scale: crate::Scale, out: &mut [f32]) -> Result<()> {
        for (o, &i) in out.iter_mut().zip(indices) {
            let line = self.lines.get(i).ok_or_else(|| Error::Invalid {
                op: "text",
                msg: format!("line {i} of {}", self.lines.len()),
            })?;
            *o = line.len() as f32;
        }
        Ok(())
    }
}

/// A padded batch: `<bos> tokens` as the decoder's inputs and `tokens
/// <eos>` as its targets, each [batch, time] with `<pad>` past a line's
/// length + 1, and those lengths.
#[derive(Debug, Clone, PartialEq)]
pub struct TextBatch {
    pub inputs: Vec<usize>,
    pub targets: Vec<usize>,
    pub lengths: Vec<usize>,
    pub time: usize,
    /// The global row of the first line (its rank's share offset in a
    /// data-parallel step; 0 otherwise): per-row random draws use it, so a
    /// line gets the same draw on whichever rank it lands.
    pub first_row: usize,
    /// Lines in the global batch (more than this batch's in a data-parallel
    /// step): batch statistics such as free bits' mean KL are taken over it.
    pub global_rows: usize,
}

/// The batch of `lines` (token ids without specials).
pub fn batch(lines: &[&[usize]]) -> TextBatch {
    let time = lines.iter().map(|l| l.len() + 1).max().unwrap_or(1);
    let (mut inputs, mut targets) = (vec![PAD; lines.len() * time], vec![PAD; lines.len() * time]);
    for (b, line) in lines.iter().enumerate() {
        let row = b * time;
        inputs[row] = BOS;
        inputs[row + 1..row + 1 + line.len()].copy_from_slice(line);
        targets[row..row + line.len()].copy_from_slice(line);
        targets[row + line.len()] = EOS;
    }
    TextBatch {
        inputs,
        targets,
        lengths: lines.iter().map(|l| l.len() + 1).collect(),
        time,
        first_row: 0,
        global_rows: lines.len(),
    }
}

/// `n` sentences of a small English grammar, from `seed`: the built-in
/// text set (no download). Ten subjects, ten verbs, ten objects and six
/// endings make 6,000 distinct sentences of 6 to 11 words.
pub fn synthetic_sentences(n: usize, seed: u64) -> Vec<String> {
    const SUBJECTS: [&str; 10] = [
        "the cat",
        "a dog",
        "the old man",
        "my sister",
        "the teacher",
        "a small bird",
        "the king",
        "our neighbour",
        "the child",
        "a farmer",
    ];
    const VERBS: [&str; 10] = [
        "sees", "likes", "finds", "carries", "watches", "paints", "follows", "feeds", "calls",
        "hides",
    ];
    const OBJECTS: [&str; 10] = [
        "the ball",
        "a red apple",
        "the river",
        "an old book",
        "the moon",
        "a green hat",
        "the garden",
        "a letter",
        "the bread",
        "the horse",
    ];
    const PLACES: [&str; 6] = [
        "",
        "in the morning",
        "near the house",
        "every day",
        "at night",
        "by the sea",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let pick =
                |words: &[&'static str], rng: &mut ChaCha8Rng| *words.choose(rng).expect("words");
            let mut s = format!(
                "{} {} {}",
                pick(&SUBJECTS, &mut rng),
                pick(&VERBS, &mut rng),
                pick(&OBJECTS, &mut rng)
            );
            let place = pick(&PLACES, &mut rng);
            if !place.is_empty() {
                s.push(' ');
                s.push_str(place);
            }
            s.push_str(" .");
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_round_trips_and_unknown_tokens_are_unk() {
        let lines = ["hello world", "hello there"];
        let v = Vocab::build(Level::Word, lines).unwrap();
        assert_eq!(v.len(), 4 + 3);
        assert_eq!(v.encode("hello you"), [4, UNK]);
        assert_eq!(v.decode(&[BOS, 4, 5, EOS, 6]), "hello world");
        let back = Vocab::from_text(&v.to_text()).unwrap();
        assert_eq!(back, v);
        let c = Vocab::build(Level::Char, ["héllo"]).unwrap();
        assert_eq!(c.decode(&c.encode("hé")), "hé");
        assert!(Vocab::build(Level::Word, ["   "]).is_err(), "specials only");
        assert!(Vocab::from_text("word\na\na").is_err(), "a repeated token");
    }

    #[test]
    fn bad_text_is_named_and_skips_are_counted() {
        let p = Path::new("t.txt");
        let e = lines(p, b"fine\nbad \xff byte\n", Level::Char, 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.txt") && e.contains("line 2"), "{e}");
        let l = lines(p, b"a b\n\n  \none two three four\nc\n", Level::Word, 3).unwrap();
        assert_eq!((l.lines.len(), l.empty, l.too_long), (2, 2, 1));
        assert!(lines(p, b"", Level::Char, 10).is_err(), "empty file");
        assert!(
            lines(p, b"\n\n", Level::Char, 10).is_err(),
            "no usable line"
        );
    }

    #[test]
    fn batches_shift_inputs_and_targets_and_pad() {
        let b = batch(&[&[7, 8, 9], &[5]]);
        assert_eq!(b.time, 4);
        assert_eq!(b.inputs, [BOS, 7, 8, 9, BOS, 5, PAD, PAD]);
        assert_eq!(b.targets, [7, 8, 9, EOS, 5, EOS, PAD, PAD]);
        assert_eq!(b.lengths, [4, 2]);
    }

    #[test]
    fn the_synthetic_sentences_are_seeded_and_split() {
        let s = synthetic_sentences(50, 1);
        assert_eq!(s, synthetic_sentences(50, 1));
        assert!(s
            .iter()
            .all(|l| l.ends_with(" .") && l.split(' ').count() >= 4));
        let set = TextSet::split_fraction(&s, Level::Word, 0.9).unwrap();
        assert_eq!((set.train.len(), set.held_out.len()), (45, 5));
        assert!(TextSet::split(&s, Level::Word, 0..10, 40..60).is_err());
    }
}
