//! Machine-readable results shared by the benches and the replay example (`#[path]`-included,
//! so each target compiles its own copy; not every target uses every item).
//!
//! With `ASIDE_BENCH_OUT=DIR` set, a harness also writes its results as `DIR/NAME.csv` (a header
//! line, then one record per line; fields that contain a comma, a quote or a line break are
//! quoted). The Markdown tables on stdout stay as they are; the path written goes to stderr.
//! `.ci/bench-report` sets it, and `benches/charts.py` reads the files.
#![allow(dead_code)]

use std::fmt::Display;
use std::path::PathBuf;

/// The environment variable naming the output folder.
pub const ENV: &str = "ASIDE_BENCH_OUT";

/// The folder named by `ASIDE_BENCH_OUT`, if it is set and not empty.
pub fn dir() -> Option<PathBuf> {
    std::env::var_os(ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// An optional field: the value, or an empty field for `None`.
pub fn opt<T: Display>(value: Option<T>) -> String {
    value.map_or(String::new(), |v| v.to_string())
}

/// A CSV table collected in memory, written by [`Csv::write`].
pub struct Csv {
    name: String,
    columns: usize,
    text: String,
}

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Csv {
    /// An empty table that will be written as `NAME.csv`, with these column names.
    pub fn new(name: &str, header: &[&str]) -> Self {
        let mut text = header
            .iter()
            .map(|h| field(h))
            .collect::<Vec<_>>()
            .join(",");
        text.push('\n');
        Self {
            name: name.to_string(),
            columns: header.len(),
            text,
        }
    }

    /// Appends one record (see [`opt`] for a field that may be empty).
    pub fn row(&mut self, fields: &[&dyn Display]) {
        assert_eq!(
            fields.len(),
            self.columns,
            "{}.csv: wrong field count",
            self.name
        );
        let line = fields
            .iter()
            .map(|v| field(&v.to_string()))
            .collect::<Vec<_>>()
            .join(",");
        self.text.push_str(&line);
        self.text.push('\n');
    }

    /// Writes `$ASIDE_BENCH_OUT/NAME.csv` (creating the folder) and returns its path, or does
    /// nothing and returns `Ok(None)` when the variable is not set.
    pub fn write(&self) -> std::io::Result<Option<PathBuf>> {
        let Some(dir) = dir() else {
            return Ok(None);
        };
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.csv", self.name));
        std::fs::write(&path, &self.text)?;
        eprintln!("{ENV}: wrote {}", path.display());
        Ok(Some(path))
    }
}
