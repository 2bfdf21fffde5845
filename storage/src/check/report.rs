//! The report as text (one line per log, then its findings) and as JSON (one object per log,
//! one per line, then a summary object). JSON is written by hand: a flat format with strings
//! and numbers does not justify a serde dependency in this crate.

use std::fmt::{self, Write as _};

use super::{Finding, LogReport, Report, Severity};

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = &self.error {
            writeln!(f, "check {}: {e}", self.data_dir)?;
        }
        for log in &self.logs {
            let status = match log.worst() {
                None | Some(Severity::Info) => "ok",
                Some(Severity::Repairable) => "DAMAGED (repairable)",
                Some(Severity::Unrepairable) => "DAMAGED (not repairable)",
            };
            writeln!(
                f,
                "{}: {status}: {} records, offsets {}..{}, {} segments, {} bytes, epoch {}{}",
                log.path,
                log.records,
                log.first_offset,
                log.next_offset,
                log.segments,
                log.bytes,
                log.epoch.map_or("unknown".into(), |e| e.to_string()),
                if log.clean_shutdown {
                    ", closed cleanly"
                } else {
                    ""
                },
            )?;
            for a in &log.repairs {
                write!(f, "  repaired {}: {}", a.file, a.action)?;
                match &a.saved_to {
                    Some(p) => writeln!(f, " (saved to {p})")?,
                    None => writeln!(f)?,
                }
            }
            if let Some(e) = log.new_epoch {
                writeln!(f, "  new epoch {e}: records were removed")?;
            }
            for x in &log.findings {
                writeln!(f, "  {}", finding_line(x))?;
            }
        }
        let damaged = self
            .logs
            .iter()
            .filter(|l| l.worst() > Some(Severity::Info))
            .count();
        writeln!(
            f,
            "{} log(s) checked, {damaged} damaged, exit code {}",
            self.logs.len(),
            self.exit_code()
        )
    }
}

fn finding_line(x: &Finding) -> String {
    let mut s = format!(
        "{} {} {}",
        x.severity,
        x.problem.name(),
        x.file.escape_debug()
    );
    if let Some(p) = x.position {
        let _ = write!(s, " at byte {p}");
    }
    if let Some(o) = &x.offsets {
        if o.end == u64::MAX {
            let _ = write!(s, " offsets {}..", o.start);
        } else {
            let _ = write!(s, " offsets {}..{}", o.start, o.end);
        }
    }
    let _ = write!(s, ": {}", x.detail);
    s
}

impl Report {
    /// One JSON object per log, one per line, then `{"summary": ...}`.
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        for log in &self.logs {
            out.push_str(&log_json(log));
            out.push('\n');
        }
        let mut s = String::from("{\"summary\":{\"data_dir\":");
        push_str(&mut s, &self.data_dir);
        let _ = write!(
            s,
            ",\"repair\":{},\"logs\":{},\"exit_code\":{},\"error\":",
            self.repair,
            self.logs.len(),
            self.exit_code()
        );
        match &self.error {
            Some(e) => push_str(&mut s, e),
            None => s.push_str("null"),
        }
        s.push_str("}}\n");
        out.push_str(&s);
        out
    }
}

fn log_json(log: &LogReport) -> String {
    let mut s = String::from("{\"log\":");
    push_str(&mut s, &log.path);
    s.push_str(",\"kind\":");
    match log.kind {
        Some(k) => push_str(&mut s, &format!("{k:?}").to_lowercase()),
        None => s.push_str("null"),
    }
    let _ = write!(
        s,
        ",\"status\":\"{}\",\"segments\":{},\"records\":{},\"bytes\":{},\"first_offset\":{},\"next_offset\":{},\"epoch\":{},\"clean_shutdown\":{},\"new_epoch\":{}",
        match log.worst() {
            None | Some(Severity::Info) => "ok",
            Some(Severity::Repairable) => "repairable",
            Some(Severity::Unrepairable) => "unrepairable",
        },
        log.segments,
        log.records,
        log.bytes,
        log.first_offset,
        log.next_offset,
        log.epoch.map_or("null".into(), |e| e.to_string()),
        log.clean_shutdown,
        log.new_epoch.map_or("null".into(), |e| e.to_string()),
    );
    s.push_str(",\"findings\":[");
    for (i, x) in log.findings.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"problem\":\"{}\",\"severity\":\"{}\",\"file\":",
            x.problem.name(),
            x.severity
        );
        push_str(&mut s, &x.file);
        s.push_str(",\"position\":");
        opt_num(&mut s, x.position);
        s.push_str(",\"first_offset\":");
        opt_num(&mut s, x.offsets.as_ref().map(|o| o.start));
        s.push_str(",\"end_offset\":");
        opt_num(
            &mut s,
            x.offsets.as_ref().map(|o| o.end).filter(|&e| e != u64::MAX),
        );
        s.push_str(",\"detail\":");
        push_str(&mut s, &x.detail);
        s.push('}');
    }
    s.push_str("],\"repairs\":[");
    for (i, a) in log.repairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"file\":");
        push_str(&mut s, &a.file);
        s.push_str(",\"action\":");
        push_str(&mut s, &a.action);
        s.push_str(",\"saved_to\":");
        match &a.saved_to {
            Some(p) => push_str(&mut s, p),
            None => s.push_str("null"),
        }
        s.push('}');
    }
    s.push_str("]}");
    s
}

fn opt_num(s: &mut String, v: Option<u64>) {
    match v {
        Some(v) => {
            let _ = write!(s, "{v}");
        }
        None => s.push_str("null"),
    }
}

/// A JSON string literal.
fn push_str(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}
