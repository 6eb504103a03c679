//! The deploy kit's files and the tools that check them (scripts/install-test-deps.sh
//! puts hadolint, kubernetes-validate and a Python with PyYAML in deploy/.venv).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A path in the repository.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A tool installed by scripts/install-test-deps.sh into deploy/.venv.
pub fn venv_tool(name: &str) -> PathBuf {
    let p = repo("deploy/.venv/bin").join(name);
    assert!(
        p.exists(),
        "{} missing: run scripts/install-test-deps.sh",
        p.display()
    );
    p
}

/// Runs `cmd` to the end: whether it succeeded, and its stdout then stderr.
pub fn run_tool(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run scripts/install-test-deps.sh)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every document of a YAML file, as JSON values (empty documents left out).
pub fn yaml_docs(path: &Path) -> Vec<Value> {
    let py = "import json, sys, yaml\n\
              print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))";
    let (ok, text) = run_tool(Command::new(venv_tool("python")).args(["-c", py]).arg(path));
    assert!(ok, "{text}");
    serde_json::from_str(&text).unwrap()
}
