//! `metrics.csv`: one row per epoch, the first column the epoch (1-based),
//! then the run's named columns; an empty cell where a value is missing
//! (no held-out set).
//!
//! The file is small, so it is rewritten whole and atomically after each
//! epoch. A resumed run keeps the rows of the epochs its checkpoint holds
//! and drops any written after it (by a run that crashed before its next
//! checkpoint), so the table never has an epoch twice.

use crate::run::RunDir;
use crate::{Error, Result};

/// The metrics table of a run.
#[derive(Debug, Clone)]
pub struct MetricsCsv {
    columns: Vec<String>,
    rows: Vec<String>,
}

/// The file name in the run directory.
pub const METRICS_FILE: &str = "metrics.csv";

impl MetricsCsv {
    /// A table with `columns` (after `epoch`); with `resume_at` = Some(k),
    /// the first k rows of the run's existing table are kept (its header must
    /// match).
    pub fn open(run: &RunDir, columns: Vec<String>, resume_at: Option<usize>) -> Result<Self> {
        let mut table = MetricsCsv {
            columns,
            rows: Vec::new(),
        };
        let Some(keep) = resume_at else {
            return Ok(table);
        };
        let path = run.join(METRICS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(crate::error::io(&path)(e)),
        };
        let mut lines = text.lines();
        if let Some(header) = lines.next() {
            if header != table.header() {
                return Err(Error::Corrupt {
                    path,
                    reason: format!(
                        "its columns ({header}) are not this run's ({})",
                        table.header()
                    ),
                });
            }
        }
        table.rows = lines
            .filter(|l| {
                l.split(',')
                    .next()
                    .and_then(|e| e.parse::<usize>().ok())
                    .is_some_and(|e| e >= 1 && e <= keep)
            })
            .map(str::to_string)
            .collect();
        Ok(table)
    }

    fn header(&self) -> String {
        std::iter::once("epoch".to_string())
            .chain(self.columns.iter().cloned())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Adds the row of `epoch` (0-based; written 1-based) and rewrites the file.
    pub fn append(&mut self, run: &RunDir, epoch: usize, values: &[Option<f64>]) -> Result<()> {
        debug_assert_eq!(values.len(), self.columns.len());
        let cells = values
            .iter()
            .map(|v| v.map(|v| v.to_string()).unwrap_or_default());
        let row = std::iter::once((epoch + 1).to_string())
            .chain(cells)
            .collect::<Vec<_>>()
            .join(",");
        self.rows.push(row);
        let mut text = self.header();
        text.push('\n');
        for r in &self.rows {
            text.push_str(r);
            text.push('\n');
        }
        run.write(METRICS_FILE, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_table_keeps_the_checkpointed_epochs_only() {
        let dir = std::env::temp_dir().join(format!("deepgen-metrics-{}", std::process::id()));
        let run = RunDir::new(&dir, true);
        run.prepare(crate::run::Start::Force).unwrap();
        let cols = vec!["loss".to_string(), "held_out".to_string()];
        let mut t = MetricsCsv::open(&run, cols.clone(), None).unwrap();
        for e in 0..3 {
            t.append(&run, e, &[Some(e as f64), None]).unwrap();
        }
        let mut t = MetricsCsv::open(&run, cols.clone(), Some(2)).unwrap();
        t.append(&run, 2, &[Some(9.0), Some(1.5)]).unwrap();
        let text = std::fs::read_to_string(dir.join(METRICS_FILE)).unwrap();
        assert_eq!(text, "epoch,loss,held_out\n1,0,\n2,1,\n3,9,1.5\n");
        let err = MetricsCsv::open(&run, vec!["x".into()], Some(1)).unwrap_err();
        assert!(err.to_string().contains("columns"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
