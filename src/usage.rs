//! Bad arguments: an error that says what to change and ends the program
//! with exit status 2, as clap's own argument errors do (1 is for failures
//! of the work itself: unreadable files, a model that does not fit).

/// An argument the user has to change; `main` exits with status 2 on it.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error as an `anyhow::Error`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// Whether an error (or any cause in its chain) is a usage error.
pub fn is_usage(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<UsageError>().is_some())
}

/// `ensure!` for arguments: returns a usage error when the condition fails.
#[macro_export]
macro_rules! ensure_arg {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::usage::usage(format!($($fmt)+)));
        }
    };
}
