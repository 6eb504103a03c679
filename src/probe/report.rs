//! What a probe found: one verdict per step, with timing, in words for people and as JSON
//! for scripts.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
    /// Not run because an earlier step failed.
    Skip,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: &'static str,
    pub verdict: Verdict,
    pub ms: u64,
    /// One sentence a person can act on.
    pub detail: String,
    /// A stable name for the mistake when the step found one (e.g. "wrong_secret"), for
    /// scripts and tests; the detail says it in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<&'static str>,
    /// Facts the step measured (addresses, lifetimes, days).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub uri: String,
    pub transport: &'static str,
    pub ok: bool,
    pub steps: Vec<Step>,
}

impl Report {
    pub fn new(uri: &str, transport: &'static str) -> Report {
        Report {
            uri: uri.to_owned(),
            transport,
            ok: true,
            steps: Vec::new(),
        }
    }

    pub fn push(&mut self, step: Step) {
        if step.verdict == Verdict::Fail {
            self.ok = false;
        }
        self.steps.push(step);
    }

    pub fn skip(&mut self, name: &'static str, why: &str) {
        self.push(Step {
            name,
            verdict: Verdict::Skip,
            ms: 0,
            detail: why.to_owned(),
            problem: None,
            data: Value::Null,
        });
    }

    pub fn human(&self) -> String {
        let mut out = format!("{}\n", self.uri);
        for s in &self.steps {
            out.push_str(&format!(
                "  {:<4}  {:<18} {:>6} ms  {}\n",
                s.verdict.word(),
                s.name,
                s.ms,
                s.detail
            ));
        }
        let problems: Vec<&str> = self.steps.iter().filter_map(|s| s.problem).collect();
        if self.ok {
            out.push_str("  => works\n");
        } else {
            out.push_str(&format!("  => FAILS ({})\n", problems.join(", ")));
        }
        out
    }
}
