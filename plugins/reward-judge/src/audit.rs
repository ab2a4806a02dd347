//! The audit trail: one JSON line per verdict (or fallback) with the judge's rationale, appended
//! beside the run's metrics so every judge reward can be checked by a person later.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use longrl_core::{Error, Result};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    pub time: f64,
    pub model: &'a str,
    pub data_source: &'a str,
    /// `yes`, `no`, `unparsed` or `unavailable`.
    pub verdict: &'a str,
    pub score: f32,
    pub problem: &'a str,
    pub prediction: &'a str,
    pub gold: &'a str,
    pub rationale: Option<&'a str>,
    pub error: Option<&'a str>,
    pub cached: bool,
    pub attempts: u32,
    pub latency_ms: Option<f64>,
}

pub struct Audit {
    path: PathBuf,
    writer: BufWriter<File>,
    /// Set after the first write error, so a full disk is reported once and never stops scoring.
    failed: bool,
}

impl Audit {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::config("audit_file", format!("cannot create directory {}: {e}", dir.display())))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::config("audit_file", format!("cannot open {}: {e}", path.display())))?;
        Ok(Audit { path: path.to_path_buf(), writer: BufWriter::new(file), failed: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, record: &AuditRecord<'_>) {
        let result = serde_json::to_writer(&mut self.writer, record)
            .map_err(std::io::Error::from)
            .and_then(|()| self.writer.write_all(b"\n"));
        self.report(result);
    }

    pub fn flush(&mut self) {
        let result = self.writer.flush();
        self.report(result);
    }

    fn report(&mut self, result: std::io::Result<()>) {
        if let Err(error) = result {
            if !self.failed {
                tracing::warn!("cannot write the judge audit file {}: {error}", self.path.display());
                self.failed = true;
            }
        }
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        let _ = self.writer.flush();
    }
}

pub fn unix_time() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
