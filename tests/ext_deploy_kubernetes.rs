//! The Kubernetes manifests in deploy/kubernetes/, validated offline against the
//! Kubernetes schemas (kubernetes-validate --strict), their ConfigMap and Secret through
//! `turnpike check-config`, and the DaemonSet's probes, ports and mounts against that
//! config. The tools come from scripts/install-test-deps.sh.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{BIN, Scratch, repo, run_tool, venv_tool, yaml_docs};
use turnpike::config::Config;

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let dir = repo("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let validator = venv_tool("kubernetes-validate");
    let (ok, text) = run_tool(Command::new(&validator).arg("--strict").args(&files));
    assert!(ok, "kubernetes-validate:\n{text}");
    assert_eq!(
        text.matches(" passed for resource ").count(),
        files.len(),
        "{text}"
    );

    // The validator catches a misspelt field (so its pass above means something).
    let bad_dir = Scratch::new("kit-k8s");
    let ds_text = std::fs::read_to_string(dir.join("daemonset.yaml")).unwrap();
    let bad = bad_dir.join("daemonset.yaml");
    std::fs::write(&bad, ds_text.replace("hostNetwork:", "hostNetwerk:")).unwrap();
    let (ok, text) = run_tool(Command::new(&validator).arg("--strict").arg(&bad));
    assert!(!ok, "a misspelt field passed:\n{text}");

    let mut by_kind: BTreeMap<String, Value> = BTreeMap::new();
    for f in &files {
        for d in yaml_docs(f) {
            by_kind.insert(d["kind"].as_str().unwrap().to_owned(), d);
        }
    }
    let toml_text = by_kind["ConfigMap"]["data"]["turnserver.toml"]
        .as_str()
        .unwrap();
    let cfg = Config::from_toml(toml_text).unwrap_or_else(|e| panic!("ConfigMap: {e:#}"));
    assert!(
        cfg.http.listen.ip().is_unspecified(),
        "the kubelet probes the node address, not loopback: {}",
        cfg.http.listen
    );

    let ds = &by_kind["DaemonSet"];
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    let ready = &c["readinessProbe"]["httpGet"];
    assert_eq!(ready["path"], "/readyz");
    assert_eq!(ready["port"], cfg.http.listen.port());
    assert!(c["lifecycle"]["preStop"].is_object(), "preStop hook");
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    // SIGTERM drains for up to server.drain_timeout after the preStop hook.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let drain = cfg.server.drain_timeout.as_secs();
    assert!(grace > pre_stop + drain, "grace {grace}s, drain {drain}s");
    // The config's listeners are the ports the pod declares.
    let declared: BTreeSet<(u64, String)> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["containerPort"].as_u64().unwrap(),
                p["protocol"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (addrs, proto) in [
        (&cfg.server.listen_udp, "UDP"),
        (&cfg.server.listen_tcp, "TCP"),
        (&cfg.server.listen_tls, "TCP"),
    ] {
        for a in addrs {
            assert!(
                declared.contains(&(a.port() as u64, proto.to_owned())),
                "{a}/{proto} not declared in {declared:?}"
            );
        }
    }
    // The config is mounted where --config points, and the secret the pod references
    // exists in the Secret.
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let conf_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    let mounts = c["volumeMounts"].as_array().unwrap();
    let cm_volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == by_kind["ConfigMap"]["metadata"]["name"])
        .expect("the ConfigMap is a volume");
    let mount = mounts
        .iter()
        .find(|m| m["name"] == cm_volume["name"])
        .expect("the ConfigMap volume is mounted");
    assert_eq!(
        Path::new(mount["mountPath"].as_str().unwrap()).join("turnserver.toml"),
        Path::new(conf_path)
    );
    let secret = &by_kind["Secret"];
    let secret_name = secret["metadata"]["name"].as_str().unwrap();
    let keys: Vec<String> = secret["stringData"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let refs: Vec<&Value> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["valueFrom"].get("secretKeyRef"))
        .chain(
            pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|v| v.get("secret")),
        )
        .collect();
    assert!(!refs.is_empty(), "the pod uses the Secret");
    for r in refs {
        let name = r.get("name").or(r.get("secretName")).unwrap();
        assert_eq!(name, secret_name);
        if let Some(k) = r.get("key") {
            assert!(keys.contains(&k.as_str().unwrap().to_owned()), "{k}");
        }
    }

    // auth.secrets_file is a key of the Secret, mounted where the config says, readable
    // by the pod's group and not by every user (turnpike refuses that).
    let secrets_file = cfg.auth.secrets_file.clone().expect("auth.secrets_file");
    let secret_volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == secret_name)
        .expect("the Secret is a volume");
    let secret_mount = mounts
        .iter()
        .find(|m| m["name"] == secret_volume["name"])
        .expect("the Secret volume is mounted");
    assert_eq!(
        secrets_file.parent().unwrap(),
        Path::new(secret_mount["mountPath"].as_str().unwrap())
    );
    let key = secrets_file.file_name().unwrap().to_str().unwrap();
    assert!(keys.contains(&key.to_owned()), "{key} not in {keys:?}");
    let mode = secret_volume["secret"]["defaultMode"].as_u64().unwrap() as u32;
    assert_eq!(mode & 0o004, 0, "world-readable secrets: {mode:o}");
    assert_ne!(mode & 0o040, 0, "the fsGroup cannot read it: {mode:o}");
    assert!(pod["securityContext"]["fsGroup"].is_u64(), "fsGroup");

    // The ConfigMap and the Secret as the pod sees them pass check-config.
    let dir = Scratch::new("kit-k8s-check");
    let file = dir.join(key);
    std::fs::write(&file, secret["stringData"][key].as_str().unwrap()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    let conf = dir.join("turnserver.toml");
    let pod_path = secrets_file.display().to_string();
    assert!(toml_text.contains(&pod_path));
    std::fs::write(
        &conf,
        toml_text.replace(&pod_path, &file.display().to_string()),
    )
    .unwrap();
    let (ok, text) = run_tool(
        Command::new(BIN)
            .args(["check-config", "--quiet", "--config"])
            .arg(&conf)
            .env_remove("TURNPIKE_CONFIG"),
    );
    assert!(ok, "check-config on the ConfigMap and Secret:\n{text}");

    for d in by_kind.values() {
        if d["kind"] != "Namespace" {
            assert_eq!(d["metadata"]["namespace"], "turnpike", "{}", d["kind"]);
        }
    }
}
