//! The one error type of the core, shared by the host and by plugin authors.

use std::fmt;

/// Errors raised by components, by the tensor core and by the plugin boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error a component returned, or a panic caught at the plugin boundary.
    #[error("plugin {component}: {call}: {message}")]
    Plugin { component: String, call: String, message: String },
    /// A configuration value was missing, unknown or malformed.
    #[error("config key `{key}`: {message}")]
    Config { key: String, message: String },
    #[cfg(feature = "tensor")]
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Msg(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a free-form message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error::Msg(message.to_string())
    }

    /// A configuration error naming the key.
    pub fn config(key: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Config { key: key.into(), message: message.to_string() }
    }

    /// Prefix the message with some context, keeping plugin errors' structure.
    pub fn context(self, context: impl fmt::Display) -> Self {
        match self {
            Error::Plugin { component, call, message } => {
                Error::Plugin { component, call, message: format!("{context}: {message}") }
            }
            other => Error::Msg(format!("{context}: {other}")),
        }
    }
}

/// `bail!`-like early return with an [`Error::Msg`].
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::Error::msg(format!($($arg)*))) };
}
