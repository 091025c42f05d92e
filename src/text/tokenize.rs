//! Cleaning, sentence splitting and tokenisation shared by the attribute
//! extractor and word2vec (SPEC 2.4 steps 1-2): lower case, "and/or" -> "or",
//! "a/b" -> "a or b", de-identification placeholders ("___", "XXXX")
//! removed; tokens are words (with inner hyphens), numbers and the
//! punctuation , ; : ( ).

/// Lower-cased, placeholder-free text with single spaces. A line break
/// before a capital letter ends a sentence (a new heading or sentence, SPEC
/// 2.4); other line breaks are wrapped lines and become spaces.
pub fn clean(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut marked = String::with_capacity(text.len() + 16);
    for (i, &c) in chars.iter().enumerate() {
        if c != '\n' {
            marked.push(c);
            continue;
        }
        let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
        let prev = marked.trim_end().chars().last();
        let ends = next.is_some_and(|c| c.is_uppercase()) && prev.is_some_and(|p| !matches!(p, '.' | '?' | '!' | ':'));
        marked.push_str(if ends { ". " } else { " " });
    }
    let lower = marked.to_lowercase().replace("___", " ").replace("xxxx", " ").replace("and/or", "or");
    // a/b between letters -> a or b
    let chars: Vec<char> = lower.chars().collect();
    let mut out = String::with_capacity(lower.len());
    for (i, &c) in chars.iter().enumerate() {
        let letter = |j: Option<&char>| j.is_some_and(|c| c.is_ascii_alphabetic());
        if c == '/' && i > 0 && letter(chars.get(i - 1)) && letter(chars.get(i + 1)) {
            out.push_str(" or ");
        } else {
            out.push(c);
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Sentences of cleaned text: split after . ? ! followed by a space (or
/// the end), and at line breaks.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut cur = String::new();
        let chars: Vec<char> = line.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            cur.push(c);
            let end = matches!(c, '.' | '?' | '!') && chars.get(i + 1).is_none_or(|n| n.is_whitespace());
            // keep decimals such as "2.5" together
            if end {
                let t = cur.trim().to_string();
                if !t.is_empty() {
                    out.push(t);
                }
                cur.clear();
            }
        }
        let t = cur.trim().to_string();
        if !t.is_empty() {
            out.push(t);
        }
    }
    out
}

/// Tokens: `[a-z]+(-[a-z]+)*`, `[0-9]+`, and `, ; : ( )`.
pub fn tokens(sentence: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = sentence.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_lowercase() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_lowercase() || (chars[i] == '-' && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase()) && i > start)) {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else {
            if matches!(c, ',' | ';' | ':' | '(' | ')') {
                out.push(c.to_string());
            }
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_before_capitals_end_sentences() {
        assert_eq!(sentences(&clean("Patchy opacity in the\n right lower lobe\nNo effusion")), vec!["patchy opacity in the right lower lobe.", "no effusion"]);
        assert_eq!(sentences(&clean("FINDINGS: clear.\nIMPRESSION: normal")), vec!["findings: clear.", "impression: normal"]);
    }

    #[test]
    fn cleaning_and_tokens() {
        assert_eq!(clean("Right  Lower Lobe XXXX opacity and/or effusion, atelectasis/pneumonia."), "right lower lobe opacity or effusion, atelectasis or pneumonia.");
        assert_eq!(tokens("bibasilar air-space disease, 2 (mild)."), vec!["bibasilar", "air-space", "disease", ",", "2", "(", "mild", ")"]);
        assert_eq!(sentences("no effusion. mild opacity in the rll.\nimpression: pneumonia"), vec!["no effusion.", "mild opacity in the rll.", "impression: pneumonia"]);
    }
}
