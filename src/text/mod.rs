//! Reports to attributes to embeddings (stage 1): report readers, cleaning
//! and tokens, the attribute vocabulary and extractor, word2vec.

pub mod commands;
pub mod extract;
pub mod reports;
pub mod tokenize;
pub mod vocab;
pub mod word2vec;
