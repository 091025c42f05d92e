//! The attribute vocabulary: canonical attributes and their surface forms
//! (`data/attributes.tsv`, shipped in the binary; `--attributes FILE`
//! replaces it). A form may stand for several attributes ("bibasilar" is
//! bilateral and basal, "rll" is right and lower).

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

pub const DEFAULT_TSV: &str = include_str!("../../data/attributes.tsv");

#[derive(Clone, Debug)]
pub struct Vocabulary {
    /// Canonical attributes in file order.
    pub names: Vec<String>,
    /// Surface form -> canonical attributes.
    pub forms: BTreeMap<String, Vec<String>>,
}

impl Vocabulary {
    pub fn parse(tsv: &str, source: &str) -> Result<Self> {
        let mut names: Vec<String> = Vec::new();
        let mut forms: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, line) in tsv.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((canon, list)) = line.split_once('\t') else {
                bail!("{source}: line {}: expected canonical<TAB>forms, got {line:?}", i + 1);
            };
            let canon = canon.trim().to_lowercase();
            if !names.contains(&canon) {
                names.push(canon.clone());
            }
            for f in list.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                let (form, attrs) = match f.split_once('=') {
                    Some((form, a)) => (form.to_string(), a.split('+').map(|s| s.trim().to_string()).collect()),
                    None => (f.to_string(), vec![canon.clone()]),
                };
                forms.insert(form.to_lowercase(), attrs);
            }
        }
        for attrs in forms.values() {
            for a in attrs {
                if !names.contains(a) {
                    bail!("{source}: form maps to {a}, which is not a canonical attribute");
                }
            }
        }
        if names.is_empty() {
            bail!("{source}: no attributes");
        }
        Ok(Vocabulary { names, forms })
    }

    pub fn default_set() -> Self {
        Self::parse(DEFAULT_TSV, "data/attributes.tsv").expect("the shipped attribute table is valid")
    }

    pub fn load(path: Option<&Path>) -> Result<Self> {
        match path {
            None => Ok(Self::default_set()),
            Some(p) => Self::parse(&std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?, &p.display().to_string()),
        }
    }

    pub fn lookup(&self, token: &str) -> Option<&Vec<String>> {
        self.forms.get(token)
    }

    /// Surface forms of one canonical attribute (those mapping to it alone).
    pub fn forms_of(&self, name: &str) -> Vec<&str> {
        self.forms.iter().filter(|(_, a)| a.len() == 1 && a[0] == name).map(|(f, _)| f.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_has_22_attributes() {
        let v = Vocabulary::default_set();
        assert_eq!(v.names.len(), 22, "{:?}", v.names);
        assert_eq!(v.lookup("bibasilar").unwrap(), &vec!["bilateral".to_string(), "basal".to_string()]);
        assert_eq!(v.lookup("rll").unwrap(), &vec!["right".to_string(), "lower".to_string()]);
        assert!(Vocabulary::parse("left\tleft,foo=bar", "x").is_err());
    }
}
