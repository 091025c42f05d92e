//! The attribute extractor (SPEC 2.2-2.5): mentions of pneumonia and its
//! findings, their status in the NegEx style (pre- and post-negation,
//! pseudo-negations, scope terminators, the "cannot exclude" family,
//! uncertainty, "atelectasis or pneumonia"), and the attributes in the
//! window around each mention that is not negated, with compounds and lobe
//! abbreviations expanded.
//!
//! Report status: AFFIRMED when a pneumonia term (pneumonia, infection, ...)
//! is affirmed (or an affirmed consolidation comes with a pneumonia term that
//! is not negated); else UNCERTAIN when a pneumonia term or a finding is
//! uncertain; else NEGATED when every mention is negated; else ABSENT (no
//! mention, or findings described without a word on pneumonia).

use super::tokenize::{clean, sentences, tokens};
use super::vocab::Vocabulary;
use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Affirmed,
    Uncertain,
    Negated,
    Absent,
}

/// Pneumonia itself.
const PNEUMONIA: &[&str] = &["pneumonia", "pneumonias", "bronchopneumonia", "pneumonitis", "infection", "infections", "infectious process", "infectious"];
/// Findings that describe it.
const FINDINGS: &[&str] = &[
    "consolidation", "consolidations", "consolidative", "consolidated", "opacity", "opacities", "opacification", "opacified",
    "infiltrate", "infiltrates", "infiltration", "infiltrative", "airspace disease", "air-space disease", "air space disease",
    "airspace process", "air space opacity", "air space opacities", "aspiration",
];
const PRE_NEG: &[&str] = &[
    "no", "not", "without", "no evidence of", "no evidence for", "no findings of", "no signs of", "no sign of", "negative for",
    "free of", "absence of", "absent", "clear of", "resolution of", "resolved", "no longer", "no definite", "no obvious",
    "no focal", "no convincing", "rather than", "ruled out", "no acute", "no visible", "no new", "nor", "no overt", "no gross",
    "no definitive", "no suspicious", "no significant",
];
const POST_NEG: &[&str] = &[
    "has resolved", "have resolved", "resolved", "has cleared", "have cleared", "cleared", "is absent", "are absent",
    "unlikely", "ruled out", "is ruled out", "not seen", "not identified", "not appreciated", "not demonstrated", "no longer seen",
    "free", "resolving", "not visualized", "not evident",
];
const PRE_NEG_UNC: &[&str] = &[
    "cannot exclude", "can not exclude", "cannot be excluded", "not excluded", "cannot rule out", "can not be ruled out",
    "could not rule out", "cannot be ruled out", "not be excluded", "difficult to exclude",
];
const PRE_UNC: &[&str] = &[
    "possible", "possibly", "probable", "probably", "questionable", "question of", "suspected", "suspicious for", "concerning for",
    "concern for", "worrisome for", "suggestive of", "suggesting", "may", "might", "could", "would", "may represent",
    "may reflect", "likely", "versus", "vs", "evaluate for", "assess for", "rule out", "differential diagnosis includes",
    "suspicion for", "suspicious", "question", "equivocal",
    "presumably", "concerning", "suggest", "raising",
];
const POST_UNC: &[&str] = &["was suspected", "were suspected", "are suspected", "is not excluded", "cannot be excluded", "is possible", "is likely", "is suspected", "not ruled out", "versus atelectasis", "not excluded", "is questioned", "is considered"];
const PSEUDO: &[&str] = &[
    "no change", "no interval change", "no significant change", "no significant interval change", "without change", "no increase",
    "not only", "not necessarily", "gram negative", "not significantly changed", "no new change", "not changed",
];
const TERM: &[&str] = &[
    "but", "however", "although", "though", "except", "aside from", "apart from", "yet", "still", "nevertheless", "which",
    "secondary to", "due to", "as the cause of", "as the source of", ";", ":", "consistent with", "compatible with", "with",
];
/// Other findings that make "<X> or pneumonia" uncertain.
const ALTERNATIVES: &[&str] = &["atelectasis", "scarring", "scar", "edema", "effusion", "effusions", "fibrosis", "fat", "mass", "atelectatic", "hemorrhage", "vessels", "nodule", "contusion"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Pneumonia,
    Finding,
    PreNeg,
    PostNeg,
    PreNegUnc,
    PreUnc,
    PostUnc,
    Pseudo,
    Term,
}

struct Tag {
    start: usize,
    end: usize,
    kinds: Vec<Kind>,
}

fn lexicon() -> Vec<(Vec<String>, Kind)> {
    let mut v = Vec::new();
    for (list, k) in [
        (PNEUMONIA, Kind::Pneumonia), (FINDINGS, Kind::Finding), (PRE_NEG, Kind::PreNeg), (POST_NEG, Kind::PostNeg),
        (PRE_NEG_UNC, Kind::PreNegUnc), (PRE_UNC, Kind::PreUnc), (POST_UNC, Kind::PostUnc), (PSEUDO, Kind::Pseudo), (TERM, Kind::Term),
    ] {
        for p in list {
            v.push((p.split(' ').map(str::to_string).collect(), k));
        }
    }
    v
}

/// Tags phrases, longest first at each position; a phrase in several lists
/// carries all their kinds.
fn tag(toks: &[String], lex: &[(Vec<String>, Kind)]) -> Vec<Tag> {
    let mut tags = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let mut best_len = 0;
        let mut kinds = Vec::new();
        for (p, k) in lex {
            if p.len() >= best_len && i + p.len() <= toks.len() && toks[i..i + p.len()] == p[..] {
                if p.len() > best_len {
                    best_len = p.len();
                    kinds.clear();
                }
                kinds.push(*k);
            }
        }
        if best_len > 0 {
            tags.push(Tag { start: i, end: i + best_len, kinds });
            i += best_len;
        } else {
            i += 1;
        }
    }
    tags
}

/// Triggers that end the scope of an earlier trigger: a negation (or a
/// pseudo-negation) does; an uncertainty word inside a negated list does not
/// ("no focal opacity to suggest pneumonia").
fn ends_scope(k: Kind) -> bool {
    matches!(k, Kind::PreNeg | Kind::PostNeg | Kind::PreNegUnc | Kind::Pseudo | Kind::Term)
}

/// Whether a pre-trigger of kind `k` covers token `pos`: it comes before,
/// and no terminator or other trigger stands between.
fn pre_scope(tags: &[Tag], ti: usize, pos: usize, k: Kind) -> bool {
    let t = &tags[ti];
    if !t.kinds.contains(&k) || t.end > pos {
        return false;
    }
    !tags.iter().any(|o| o.start >= t.end && o.end <= pos && o.kinds.iter().any(|&k2| ends_scope(k2)))
}

/// Whether a post-trigger of kind `k` covers a mention ending at `end`: at
/// most 5 tokens after it, no terminator between.
fn post_scope(tags: &[Tag], ti: usize, end: usize, k: Kind) -> bool {
    let t = &tags[ti];
    if !t.kinds.contains(&k) || t.start < end || t.start - end > 5 {
        return false;
    }
    !tags.iter().any(|o| o.start >= end && o.end <= t.start && o.kinds.contains(&Kind::Term))
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Mention {
    pub text: String,
    pub status: Status,
    pub pneumonia: bool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Span {
    pub attribute: String,
    /// The words the attribute came from, as in the cleaned sentence.
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Extraction {
    pub status: Status,
    pub attributes: BTreeSet<String>,
    pub spans: Vec<Span>,
    pub mentions: Vec<Mention>,
}

/// Tokens that end an attribute window.
const BOUNDARY: &[&str] = &[".", ";", ":", "(", ")", "but", "however", "although", "while", "which", "with", "whereas", "without", "and", "or", ",", "likely", "due", "from"];
const AFTER_AND: &[&str] = &["lower", "upper", "middle", "lobe", "lobes", "lung", "lungs", "base", "bases", "zone", "zones"];
/// Nouns of location that make "and <attribute> <noun>" part of a list of places.
const PLACES: &[&str] = &["lung", "lungs", "lobe", "lobes", "base", "bases", "zone", "zones", "apex", "apices", "region", "regions", "field", "fields", "midlung", "lingula"];

pub struct Extractor {
    pub vocab: Vocabulary,
    lex: Vec<(Vec<String>, Kind)>,
}

impl Extractor {
    pub fn new(vocab: Vocabulary) -> Self {
        Extractor { vocab, lex: lexicon() }
    }

    /// Status of every mention of one sentence, and its attributes.
    fn sentence(&self, toks: &[String], out: &mut Extraction) {
        let tags = tag(toks, &self.lex);
        let is_attr = |i: usize| i < toks.len() && self.vocab.lookup(&toks[i]).is_some();
        for (mi, m) in tags.iter().enumerate() {
            let pneumonia = m.kinds.contains(&Kind::Pneumonia);
            if !pneumonia && !m.kinds.contains(&Kind::Finding) {
                continue;
            }
            let any_pre = |k| (0..tags.len()).any(|ti| pre_scope(&tags, ti, m.start, k));
            let any_post = |k| (0..tags.len()).any(|ti| post_scope(&tags, ti, m.end, k));
            // "<other finding> or|versus <mention>" and the reverse
            let alt = |i: isize| i >= 0 && (i as usize) < toks.len() && ALTERNATIVES.contains(&toks[i as usize].as_str());
            let conj = |i: isize| i >= 0 && (i as usize) < toks.len() && matches!(toks[i as usize].as_str(), "or" | "versus" | "vs");
            // "<other finding> or [up to 2 words] <mention>" and "<mention> or <other finding>"
            let before = (1..=3).find(|&d| conj(m.start as isize - d) && alt(m.start as isize - d - 1));
            let after = conj(m.end as isize) && alt(m.end as isize + 1);
            let coord = before.is_some() || after;
            let status = if any_pre(Kind::PreNegUnc) {
                Status::Uncertain
            } else if any_pre(Kind::PreNeg) || any_post(Kind::PostNeg) {
                Status::Negated
            } else if any_pre(Kind::PreUnc) || any_post(Kind::PostUnc) || coord {
                Status::Uncertain
            } else {
                Status::Affirmed
            };
            out.mentions.push(Mention { text: toks[m.start..m.end].join(" "), status, pneumonia });
            if status == Status::Negated {
                continue;
            }
            // attribute window: up to 8 tokens each side, cut at boundaries
            let cut = |i: usize, step: isize| -> bool {
                let t = toks[i].as_str();
                if t == "," || t == "and" || t == "or" {
                    // keep coordinations of attributes ("right, left and bibasilar")
                    let (prev, next) = (i as isize - 1, i as isize + 1);
                    let attr_pair = prev >= 0 && is_attr(prev as usize) && is_attr(next as usize);
                    let lobe_next = t != "," && (next as usize) < toks.len() && AFTER_AND.contains(&toks[next as usize].as_str());
                    // "... right lung and left base": a list of places
                    let place_list = t == "and" && is_attr(next as usize)
                        && (next as usize + 1..(next as usize + 3).min(toks.len())).any(|k| PLACES.contains(&toks[k].as_str()) || is_attr(k));
                    return !(attr_pair || lobe_next || place_list);
                }
                let _ = step;
                BOUNDARY.contains(&t) || tags.iter().any(|o| o.start == i && o.kinds.iter().any(|&k| k == Kind::PreNeg || k == Kind::Term))
            };
            // the alternative finding of a coordination is part of the mention ("rll atelectasis or pneumonia")
            let (from, to) = (m.start - before.map_or(0, |d| d as usize + 1), m.end + if after { 2 } else { 0 });
            let mut window: Vec<usize> = (from..to.min(toks.len())).collect();
            let mut i = from as isize - 1;
            while i >= 0 && from as isize - i <= 8 {
                // a short parenthesis is skipped, not a boundary
                if toks[i as usize] == ")" {
                    if let Some(k) = (1..=4).find(|&k| i - k >= 0 && toks[(i - k) as usize] == "(") {
                        i -= k + 1;
                        continue;
                    }
                }
                if cut(i as usize, -1) {
                    break;
                }
                window.push(i as usize);
                i -= 1;
            }
            let mut j = to;
            while j < toks.len() && j - to < 8 {
                if toks[j] == "(" {
                    if let Some(k) = (1..=4).find(|&k| j + k < toks.len() && toks[j + k] == ")") {
                        j += k + 1;
                        continue;
                    }
                }
                if cut(j, 1) {
                    break;
                }
                window.push(j);
                j += 1;
            }
            // a finding before an earlier mention of the window is its own; skip other mentions' negated parts
            for &w in &window {
                if let Some(attrs) = self.vocab.lookup(&toks[w]) {
                    for a in attrs {
                        if out.attributes.insert(a.clone()) {
                            out.spans.push(Span { attribute: a.clone(), text: toks[w.min(m.start)..(w + 1).max(m.end)].join(" ") });
                        }
                    }
                }
            }
            let _ = mi;
        }
    }

    /// The whole report text (already restricted to FINDINGS / IMPRESSION).
    pub fn extract(&self, text: &str) -> Extraction {
        let mut out = Extraction { status: Status::Absent, attributes: BTreeSet::new(), spans: Vec::new(), mentions: Vec::new() };
        for s in sentences(&clean(text)) {
            // a sentence starting "no" with a list is negated as a whole (NegBio)
            self.sentence(&tokens(&s), &mut out);
        }
        out.status = report_status(&out.mentions);
        out
    }
}

/// The report status from its mentions (see the module documentation).
pub fn report_status(mentions: &[Mention]) -> Status {
    let p = |s: Status| mentions.iter().any(|m| m.pneumonia && m.status == s);
    let f = |s: Status| mentions.iter().any(|m| !m.pneumonia && m.status == s);
    let consolidation_affirmed = mentions.iter().any(|m| m.text.starts_with("consolidat") && m.status == Status::Affirmed);
    if p(Status::Affirmed) || (consolidation_affirmed && p(Status::Uncertain)) {
        Status::Affirmed
    } else if p(Status::Uncertain) || f(Status::Uncertain) {
        Status::Uncertain
    } else if mentions.is_empty() {
        Status::Absent
    } else if mentions.iter().all(|m| m.status == Status::Negated) {
        Status::Negated
    } else {
        Status::Absent
    }
}
