//! The Kubernetes manifests of deploy/kubernetes/ as the tests read them, and the
//! DaemonSet's render-config initContainer run here the way the kubelet would run it.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::{BIN, Scratch, repo, run_tool, yaml_docs};

/// The sample node's name: the downward API's spec.nodeName.
pub const NODE: &str = "pool-a-7f3k";

/// check-config test-binds the listener ports (0.0.0.0:3478, :9641): one at a time.
static CHECK_CONFIG: Mutex<()> = Mutex::new(());

/// Every manifest file, and its documents by kind (the kit has one of each kind).
pub struct Manifests {
    pub files: Vec<PathBuf>,
    pub docs: usize,
    pub by_kind: BTreeMap<String, Value>,
}

pub fn manifests() -> Manifests {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let (mut docs, mut by_kind) = (0, BTreeMap::new());
    for f in &files {
        for d in yaml_docs(f) {
            docs += 1;
            let kind = d["kind"].as_str().unwrap().to_owned();
            assert!(by_kind.insert(kind.clone(), d).is_none(), "two {kind}s");
        }
    }
    Manifests {
        files,
        docs,
        by_kind,
    }
}

impl Manifests {
    pub fn kind(&self, kind: &str) -> &Value {
        self.by_kind
            .get(kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    }
    pub fn pod(&self) -> &Value {
        &self.kind("DaemonSet")["spec"]["template"]["spec"]
    }
    pub fn turnpike(&self) -> &Value {
        &self.pod()["containers"][0]
    }
    pub fn init(&self) -> &Value {
        list(&self.pod()["initContainers"])
            .iter()
            .find(|c| c["name"] == "render-config")
            .expect("the render-config initContainer")
    }
    pub fn template(&self) -> &str {
        self.kind("ConfigMap")["data"]["turnserver.toml"]
            .as_str()
            .unwrap()
    }
    pub fn volume(&self, name: &Value) -> &Value {
        list(&self.pod()["volumes"])
            .iter()
            .find(|v| &v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    }
}

/// A JSON array's items; none when the field is absent.
pub fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], |a| a.as_slice())
}

/// A JSON string's text; panics on anything else.
pub fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// A Node as the API answers GET /api/v1/nodes/NAME: a region label when given (an
/// annotation of the same key, which must not be read, always), and these addresses.
pub fn sample_node(region: Option<&str>, addresses: &[(&str, &str)]) -> Value {
    let mut labels = json!({"kubernetes.io/hostname": NODE});
    if let Some(r) = region {
        labels["topology.kubernetes.io/region"] = json!(r);
    }
    let addresses: Vec<Value> = addresses
        .iter()
        .map(|(t, a)| json!({"type": t, "address": a}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE,
            "labels": labels,
            "annotations": {"topology.kubernetes.io/region": "annotation-not-label"},
        },
        "status": {"addresses": addresses},
    })
}

/// What the render-config script did: its exit status and output, and the config file
/// turnpike's --config would then read (None when there is none).
pub struct Rendered {
    pub ok: bool,
    pub log: String,
    pub config: Option<String>,
}

/// Runs the initContainer's own command with sh as the kubelet would: every volume it
/// mounts is a scratch directory (the ConfigMap's one holds the ConfigMap's files), its
/// env with the downward API's fields set to NODE and `host_ip`, and a kubectl that
/// answers `get --raw /api/v1/nodes/NODE` with `node` (None: the API refuses).
pub fn render(m: &Manifests, node: Option<&Value>, host_ip: &str) -> Rendered {
    let init = m.init();
    let argv: Vec<&str> = list(&init["command"]).iter().map(text).collect();
    assert_eq!(argv, ["/bin/sh", "-c"]);
    let dir = Scratch::new("k8s-render");
    let volumes = dir.join("volumes");
    let mut mounts: Vec<(PathBuf, PathBuf)> = Vec::new();
    for mnt in list(&init["volumeMounts"]) {
        let local = volumes.join(text(&mnt["name"]));
        std::fs::create_dir_all(&local).unwrap();
        let vol = m.volume(&mnt["name"]);
        if vol["configMap"]["name"] == m.kind("ConfigMap")["metadata"]["name"] {
            for (key, value) in m.kind("ConfigMap")["data"].as_object().unwrap() {
                std::fs::write(local.join(key), text(value)).unwrap();
            }
        }
        mounts.push((PathBuf::from(text(&mnt["mountPath"])), local));
    }
    let local_path = |pod_path: &str| -> Option<PathBuf> {
        let p = Path::new(pod_path);
        mounts
            .iter()
            .find_map(|(at, local)| p.strip_prefix(at).ok().map(|rest| local.join(rest)))
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(text(&init["args"][0]));
    for e in list(&init["env"]) {
        let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("spec.nodeName") => NODE.to_owned(),
            Some("status.hostIP") => host_ip.to_owned(),
            Some(other) => panic!("no sample value for {other}"),
            None => text(&e["value"]).to_owned(),
        };
        let value = local_path(&value).map_or(value, |p| p.display().to_string());
        cmd.env(text(&e["name"]), value);
    }
    let bin = fake_kubectl(&dir, node);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let (ok, log) = run_tool(cmd.env("PATH", path));
    let config = turnpike_config(m, &volumes);
    Rendered { ok, log, config }
}

/// A directory with a `kubectl` that answers the one request render-config may make.
fn fake_kubectl(dir: &Path, node: Option<&Value>) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let answer = match node {
        Some(n) => format!("cat <<'EOF'\n{n}\nEOF"),
        None => "echo 'Error from server (Forbidden)' >&2; exit 1".to_owned(),
    };
    let want = format!("get --raw /api/v1/nodes/{NODE}");
    let fake = format!(
        "#!/bin/sh\n[ \"$*\" = \"{want}\" ] || {{ echo \"kubectl: unexpected: $*\" >&2; exit 2; }}\n{answer}\n"
    );
    let kubectl = bin.join("kubectl");
    std::fs::write(&kubectl, fake).unwrap();
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// The file turnpike reads, its --config, in `volumes` (render-config's volumes by name);
/// None when there is no such file.
fn turnpike_config(m: &Manifests, volumes: &Path) -> Option<String> {
    let args: Vec<&str> = list(&m.turnpike()["args"]).iter().map(text).collect();
    let conf = Path::new(args[args.iter().position(|a| *a == "--config").unwrap() + 1]);
    let mount = list(&m.turnpike()["volumeMounts"])
        .iter()
        .find(|mnt| conf.starts_with(text(&mnt["mountPath"])))
        .expect("--config is in a mounted volume");
    let vol = volumes.join(text(&mount["name"]));
    assert!(
        vol.exists(),
        "turnpike reads {} from a volume render-config does not write",
        conf.display()
    );
    let rest = conf.strip_prefix(text(&mount["mountPath"])).unwrap();
    std::fs::read_to_string(vol.join(rest)).ok()
}

/// `turnpike check-config` (not quiet: it prints the effective settings) on `toml_text`
/// with the Secret's files where the config names them, moved into a scratch directory
/// with the volume's mode.
pub fn check_config(m: &Manifests, toml_text: &str) -> (bool, String) {
    let secret = m.kind("Secret");
    let vol = list(&m.pod()["volumes"])
        .iter()
        .find(|v| v["secret"]["secretName"] == secret["metadata"]["name"])
        .expect("the Secret is a volume");
    let mode = vol["secret"]["defaultMode"].as_u64().unwrap() as u32;
    let mount = list(&m.turnpike()["volumeMounts"])
        .iter()
        .find(|mnt| mnt["name"] == vol["name"])
        .expect("the Secret volume is mounted");
    let dir = Scratch::new("k8s-check");
    let mut toml_text = toml_text.to_owned();
    for (key, value) in secret["stringData"].as_object().unwrap() {
        let file = dir.file(key, text(value));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let pod_path = format!("{}/{key}", text(&mount["mountPath"]));
        toml_text = toml_text.replace(&pod_path, &file.display().to_string());
    }
    let conf = dir.file("turnserver.toml", &toml_text);
    let _one_at_a_time = CHECK_CONFIG.lock().unwrap_or_else(|e| e.into_inner());
    run_tool(
        Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&conf)
            .env_remove("TURNPIKE_CONFIG"),
    )
}
