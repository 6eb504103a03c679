//! The Kubernetes manifests in deploy/kubernetes/: every file validated offline against
//! the Kubernetes schemas (kubernetes-validate --strict); the DaemonSet's render-config
//! script, taken from the manifest and run here with sh on the ConfigMap's template for
//! sample nodes (a stand-in kubectl answers with the node, jq is the real one), its output
//! read through Config::from_toml and the real `turnpike check-config`; the pod's probes,
//! ports, grace period and Secret against that config; the RBAC (get on nodes, nothing
//! else); the Valkey Deployment. The tools come from scripts/install-test-deps.sh.

mod support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::kubernetes::{
    Manifests, NODE, check_config, list, manifests, render, sample_node, text,
};
use support::{Scratch, repo, run_tool, venv_tool};
use turnpike::config::Config;
use turnpike::settings::addresses::uris;

const REGION: &str = "eu-west-1";
const EXTERNAL_IP: &str = "203.0.113.7";
const HOST_IP: &str = "10.0.3.4";

/// The config render-config writes for a cloud node with a region and an ExternalIP.
fn rendered() -> (Manifests, String) {
    let m = manifests();
    let node = sample_node(
        Some(REGION),
        &[
            ("InternalIP", HOST_IP),
            ("ExternalIP", "2001:db8::7"),
            ("ExternalIP", EXTERNAL_IP),
        ],
    );
    let r = render(&m, Some(&node), HOST_IP);
    assert!(r.ok, "render-config:\n{}", r.log);
    let config = r.config.expect("render-config wrote turnpike's config");
    (m, config)
}

fn parse(toml_text: &str) -> Config {
    Config::from_toml(toml_text).unwrap_or_else(|e| panic!("{e:#}\n{toml_text}"))
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let m = manifests();
    assert_eq!(m.files.len(), 6, "{:?}", m.files);
    let validator = venv_tool("kubernetes-validate");
    let (ok, out) = run_tool(Command::new(&validator).arg("--strict").args(&m.files));
    assert!(ok, "kubernetes-validate:\n{out}");
    // One line per resource, the multi-document files' too.
    assert_eq!(m.docs, 9);
    assert_eq!(
        out.matches(" passed for resource ").count(),
        m.docs,
        "{out}"
    );

    // The validator catches a misspelt field (so its pass above means something).
    let bad_dir = Scratch::new("kit-k8s");
    let dir = repo("deploy/kubernetes");
    for (file, from, to) in [
        ("daemonset.yaml", "hostNetwork:", "hostNetwerk:"),
        (
            "redis.yaml",
            "readOnlyRootFilesystem:",
            "readOnlyRootFilesystems:",
        ),
    ] {
        let bad = bad_dir.join(file);
        let good = std::fs::read_to_string(dir.join(file)).unwrap();
        std::fs::write(&bad, good.replacen(from, to, 1)).unwrap();
        let (ok, out) = run_tool(Command::new(&validator).arg("--strict").arg(&bad));
        assert!(!ok, "a misspelt field in {file} passed:\n{out}");
    }

    let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
    for (kind, d) in &m.by_kind {
        if !cluster_scoped.contains(&kind.as_str()) {
            assert_eq!(d["metadata"]["namespace"], "turnpike", "{kind}");
        }
    }
}

#[test]
fn render_config_fills_in_the_cluster_section_from_the_node() {
    let (m, config) = rendered();
    let cfg = parse(&config);
    let c = cfg.cluster.as_ref().expect("[cluster]");
    assert_eq!(c.node_name.as_deref(), Some(NODE));
    assert_eq!(c.region, REGION, "the region label, not the annotation");
    // The first IPv4 ExternalIP is what clients are told, relay addresses and URIs alike;
    // the URIs are this node's listeners, named as turnpike names them itself.
    let ip: IpAddr = EXTERNAL_IP.parse().unwrap();
    assert_eq!(cfg.relay.advertised_ipv4, Some(ip));
    assert_eq!(c.uris, uris(&cfg, ip));
    assert!(!c.uris.is_empty());
    // redis_url names the Service of redis.yaml, at its port.
    let svc = m.kind("Service");
    let url = format!(
        "redis://{}.{}.svc:{}",
        text(&svc["metadata"]["name"]),
        text(&svc["metadata"]["namespace"]),
        svc["spec"]["ports"][0]["port"]
    );
    assert_eq!(c.redis_url, url);

    // The real binary accepts it, and its effective settings carry the node's values.
    let (ok, out) = check_config(&m, &config);
    assert!(ok, "check-config on the rendered config:\n{out}");
    let flat: String = out.chars().filter(|c| !c.is_whitespace()).collect();
    for want in [
        format!("node_name:Some(\"{NODE}\""),
        format!("region:\"{REGION}\""),
        format!("advertised_ipv4:Some({EXTERNAL_IP}"),
    ] {
        assert!(
            flat.contains(&want),
            "check-config does not show {want}:\n{out}"
        );
    }
}

#[test]
fn render_config_falls_back_to_host_ip_and_refuses_what_it_cannot_fill_in() {
    let m = manifests();
    // Bare metal: no ExternalIP, no region label. hostIP is the address, no region.
    let node = sample_node(None, &[("InternalIP", HOST_IP), ("Hostname", NODE)]);
    let r = render(&m, Some(&node), HOST_IP);
    assert!(r.ok, "{}", r.log);
    let config = r.config.unwrap();
    let cfg = parse(&config);
    let host_ip: IpAddr = HOST_IP.parse().unwrap();
    assert_eq!(cfg.relay.advertised_ipv4, Some(host_ip));
    assert_eq!(cfg.cluster.as_ref().unwrap().region, "");
    let (ok, out) = check_config(&m, &config);
    assert!(ok, "{out}");

    // Each of these fails the init container and leaves turnpike no config to start on:
    // values that would need quoting in TOML, a node with no IPv4 address, and an API
    // that refuses (no RBAC, say).
    let v6 = [("ExternalIP", "2001:db8::7"), ("InternalIP", "fd00::4")];
    let cases = [
        (Some(sample_node(Some("eu\"west"), &[])), HOST_IP, "region"),
        (Some(sample_node(Some("eu west"), &[])), HOST_IP, "region"),
        (Some(sample_node(Some(REGION), &v6)), "fd00::4", "IPv4"),
        (None, HOST_IP, "Forbidden"),
    ];
    for (node, host_ip, why) in cases {
        let r = render(&m, node.as_ref(), host_ip);
        assert!(!r.ok && r.log.contains(why), "{why}: {}", r.log);
        assert_eq!(r.config, None, "{why}: a config was written");
    }
}

#[test]
fn check_config_refuses_a_placeholder_left_or_a_broken_redis_url() {
    let m = manifests();
    let template = m.template();
    // The placeholders are the ones the script fills in.
    let found: BTreeSet<&str> = template
        .split("{{ ")
        .skip(1)
        .map(|s| s.split_once(" }}").unwrap().0)
        .collect();
    let script = text(&m.init()["args"][0]);
    for p in &found {
        assert!(script.contains(&format!("split(\"{{{{ {p} }}}}\")")), "{p}");
    }
    let samples = [
        ("node_name", NODE, "cluster.node_name"),
        ("region", REGION, "cluster.region"),
        ("node_address", EXTERNAL_IP, "advertised_ipv4"),
    ];
    let names: BTreeSet<&str> = samples.iter().map(|s| s.0).collect();
    assert_eq!(found, names);
    // Any one of them left unfilled: check-config fails and names the key.
    for (left, _, key) in samples {
        let mut toml_text = template.to_owned();
        for (p, value, _) in samples.iter().filter(|s| s.0 != left) {
            toml_text = toml_text.replace(&format!("{{{{ {p} }}}}"), value);
        }
        let (ok, out) = check_config(&m, &toml_text);
        assert!(!ok && out.contains(key), "{{{{ {left} }}}} left:\n{out}");
    }
    // A Redis URL that is not one.
    let (_, config) = rendered();
    assert!(config.contains("redis_url = \"redis://"));
    let broken = config.replace("redis_url = \"redis://", "redis_url = \"http://");
    let (ok, out) = check_config(&m, &broken);
    assert!(!ok && out.contains("cluster.redis_url"), "{out}");
}

#[test]
fn daemonset_probes_ports_and_grace_follow_the_config() {
    let (m, config) = rendered();
    let cfg = parse(&config);
    assert!(
        cfg.http.listen.ip().is_unspecified(),
        "the kubelet probes the node address, not loopback: {}",
        cfg.http.listen
    );
    let pod = m.pod();
    assert_eq!(pod["hostNetwork"], true);
    // The Redis Service's name resolves from the host network only with this policy.
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    let c = m.turnpike();
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
    let declared: BTreeSet<(u64, String)> = list(&c["ports"])
        .iter()
        .map(|p| {
            let port = p["containerPort"].as_u64().unwrap();
            (port, text(&p["protocol"]).to_owned())
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
}

#[test]
fn daemonset_mounts_the_secret_where_the_config_reads_it() {
    let (m, config) = rendered();
    let cfg = parse(&config);
    let (pod, c) = (m.pod(), m.turnpike());
    let secret = m.kind("Secret");
    let secret_name = &secret["metadata"]["name"];
    let keys: Vec<&String> = secret["stringData"].as_object().unwrap().keys().collect();
    let refs: Vec<&Value> = list(&c["env"])
        .iter()
        .filter_map(|e| e["valueFrom"].get("secretKeyRef"))
        .chain(list(&pod["volumes"]).iter().filter_map(|v| v.get("secret")))
        .collect();
    assert!(!refs.is_empty(), "the pod uses the Secret");
    for r in refs {
        assert_eq!(r.get("name").or(r.get("secretName")).unwrap(), secret_name);
        if let Some(k) = r.get("key") {
            assert!(keys.contains(&&text(k).to_owned()), "{k}");
        }
    }
    // auth.secrets_file is a key of the Secret, mounted where the config says, readable
    // by the pod's group and not by every user (turnpike refuses that).
    let secrets_file = cfg.auth.secrets_file.clone().expect("auth.secrets_file");
    let vol = list(&pod["volumes"])
        .iter()
        .find(|v| &v["secret"]["secretName"] == secret_name)
        .unwrap();
    let mount = list(&c["volumeMounts"])
        .iter()
        .find(|mnt| mnt["name"] == vol["name"])
        .expect("the Secret volume is mounted");
    assert_eq!(
        secrets_file.parent().unwrap(),
        Path::new(text(&mount["mountPath"]))
    );
    let key = secrets_file.file_name().unwrap().to_str().unwrap();
    assert!(keys.contains(&&key.to_owned()), "{key} not in {keys:?}");
    let mode = vol["secret"]["defaultMode"].as_u64().unwrap();
    assert_eq!(mode & 0o004, 0, "world-readable secrets: {mode:o}");
    assert_ne!(mode & 0o040, 0, "the fsGroup cannot read it: {mode:o}");
    assert!(pod["securityContext"]["fsGroup"].is_u64(), "fsGroup");
}

#[test]
fn render_config_alone_may_get_nodes_and_nothing_else() {
    let m = manifests();
    let pod = m.pod();
    let sa = m.kind("ServiceAccount");
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    let role = m.kind("ClusterRole");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}])
    );
    assert!(role.get("aggregationRule").is_none());
    let binding = m.kind("ClusterRoleBinding");
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
               "name": role["metadata"]["name"]})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                "namespace": sa["metadata"]["namespace"]}])
    );
    for kind in ["Role", "RoleBinding"] {
        assert!(
            !m.by_kind.contains_key(kind),
            "a {kind} besides the ClusterRole"
        );
    }
    // The token reaches render-config only: nothing is mounted automatically, and the
    // one volume that projects a token is mounted in no other container.
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(sa["automountServiceAccountToken"], false);
    let token_volumes: Vec<&Value> = list(&pod["volumes"])
        .iter()
        .filter(|v| {
            list(&v["projected"]["sources"])
                .iter()
                .any(|s| s.get("serviceAccountToken").is_some())
        })
        .map(|v| &v["name"])
        .collect();
    assert_eq!(token_volumes.len(), 1);
    let init = m.init();
    for c in list(&pod["containers"])
        .iter()
        .chain(list(&pod["initContainers"]))
    {
        let has_token = list(&c["volumeMounts"])
            .iter()
            .any(|mnt| token_volumes.contains(&&mnt["name"]));
        assert_eq!(has_token, c == init, "{}", c["name"]);
    }
}

#[test]
fn every_container_is_non_root_locked_down_and_pinned() {
    let m = manifests();
    let redis = &m.kind("Deployment")["spec"]["template"]["spec"];
    for pod in [m.pod(), redis] {
        let sc = &pod["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true);
        assert_ne!(sc["runAsUser"].as_u64().expect("runAsUser"), 0);
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        for c in list(&pod["containers"])
            .iter()
            .chain(list(&pod["initContainers"]))
        {
            let name = &c["name"];
            let csc = &c["securityContext"];
            assert_eq!(csc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(csc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(csc["capabilities"]["drop"], json!(["ALL"]), "{name}");
            assert!(csc.get("runAsUser").is_none_or(|u| u != 0), "{name}");
            assert!(c["resources"]["requests"].is_object(), "{name}");
            assert!(c["resources"]["limits"]["memory"].is_string(), "{name}");
            // A tag, and not one that moves on its own.
            let image = text(&c["image"]);
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(!tag.is_empty() && !tag.contains('/'), "{name}: {image}");
            assert!(!["latest", "alpine", "stable"].contains(&tag), "{image}");
        }
    }
}

#[test]
fn redis_deployment_is_probed_in_memory_and_behind_its_service() {
    let m = manifests();
    let dep = m.kind("Deployment");
    assert_eq!(dep["spec"]["replicas"], 1);
    assert_eq!(dep["spec"]["strategy"]["type"], "Recreate");
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert!(c["readinessProbe"].is_object() && c["livenessProbe"].is_object());
    // Nothing to persist: no RDB snapshots, no append-only file.
    let args: Vec<&str> = list(&c["args"]).iter().map(text).collect();
    let after = |flag: &str| args.iter().position(|a| *a == flag).map(|i| args[i + 1]);
    assert_eq!(after("--save"), Some(""));
    assert_eq!(after("--appendonly"), Some("no"));
    // The working directory is writable on a read-only root.
    let data = list(&c["volumeMounts"])
        .iter()
        .find(|mnt| mnt["mountPath"] == "/data")
        .expect("/data is mounted");
    let vol = list(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == data["name"])
        .unwrap();
    assert!(vol["emptyDir"].is_object());
    // The Service selects this pod and reaches a port it declares.
    let svc = m.kind("Service");
    let labels = dep["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(labels.get(k), Some(v), "selector {k}");
    }
    assert_eq!(
        dep["spec"]["selector"]["matchLabels"],
        svc["spec"]["selector"]
    );
    let target = &svc["spec"]["ports"][0]["targetPort"];
    assert!(
        list(&c["ports"])
            .iter()
            .any(|p| &p["name"] == target || &p["containerPort"] == target),
        "targetPort {target}"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        if let Some(port) = c[probe]["tcpSocket"].get("port") {
            assert!(
                list(&c["ports"]).iter().any(|p| &p["name"] == port),
                "{probe}"
            );
        }
    }
}
