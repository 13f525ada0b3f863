//! Configuration: the YAML file (`raw`) is compiled (`compile`) into one
//! typed `Config` (`model`), reporting every error with its file position.
//! `check-config` and `serve` run exactly the same code.

mod compile;
pub mod locate;
pub mod model;
mod raw;

pub use raw::schema_json;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::*;

/// One problem in a configuration file, printed as `PATH:LINE:COL: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Every problem found in one file, in file order.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Read and compile the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            message: format!("cannot read configuration file: {e}"),
        }])
    })?;
    parse(&text, path)
}

/// Compile configuration text; `source` names it in errors.
pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigErrors> {
    compile::compile(text, source)
}
