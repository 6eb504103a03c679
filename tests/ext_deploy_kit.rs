//! The deploy kit in deploy/: the Containerfile (hadolint, its key instructions, and its
//! HEALTHCHECK command against a live server), the Prometheus alert rules (promtool check
//! and unit tests) and the Grafana dashboard (every metric it and the alerts name exists in
//! a real turnpike's /metrics). The Kubernetes manifests have ext_deploy_kubernetes.rs.
//! The tools come from scripts/install-test-deps.sh.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    BIN, Proc, Scratch, free_tcp_port, free_udp_port, http_get, repo, run_tool, venv_tool,
    yaml_docs,
};

/// The turnpike binary running on loopback, killed (by its own PID) on drop.
struct Running {
    child: Proc,
    http: SocketAddr,
    udp: SocketAddr,
}

impl Running {
    fn start(ports: &str) -> Running {
        let udp: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let child = Proc::spawn(
            Command::new(BIN)
                .arg("--listen")
                .arg(udp.to_string())
                .arg("--http-listen")
                .arg(http.to_string())
                .args(["--relay-ip", "127.0.0.1", "--ports", ports, "--shards", "1"])
                .env("TURNPIKE_SECRET", "deploy-kit-test-secret")
                .env_remove("TURNPIKE_CONFIG")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let mut r = Running { child, http, udp };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(http).is_ok() && http_get(http, "GET", "/readyz", &[]).0 == 200 {
                return r;
            }
            assert!(
                r.child.0.try_wait().unwrap().is_none(),
                "turnpike exited at start"
            );
            assert!(Instant::now() < deadline, "turnpike not ready in 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---------------------------------------------------------------- Containerfile

/// (instruction, arguments) with line continuations joined and comments dropped.
fn containerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo("deploy/Containerfile")).unwrap();
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(part) = t.strip_suffix('\\') {
            cur.push_str(part);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let (ins, args) = cur.split_once(' ').unwrap_or((&cur, ""));
        out.push((ins.to_ascii_uppercase(), args.trim().to_owned()));
        cur.clear();
    }
    out
}

#[test]
fn containerfile_is_lint_clean_multi_stage_and_non_root() {
    let (ok, text) =
        run_tool(Command::new(venv_tool("hadolint")).arg(repo("deploy/Containerfile")));
    assert!(ok && text.trim().is_empty(), "hadolint:\n{text}");

    let ins = containerfile();
    let froms: Vec<&String> = ins
        .iter()
        .filter(|(i, _)| i == "FROM")
        .map(|(_, a)| a)
        .collect();
    assert!(froms.len() >= 2, "multi-stage build: {froms:?}");
    // The build image carries a Rust at least as new as the crate's rust-version.
    let manifest = std::fs::read_to_string(repo("Cargo.toml")).unwrap();
    let need: toml::Table = toml::from_str(&manifest).unwrap();
    let need = need["package"]["rust-version"].as_str().unwrap().to_owned();
    let ver = |s: &str| -> Vec<u32> { s.split('.').map(|p| p.parse().unwrap()).collect() };
    let build = froms[0];
    let tag = build
        .split_once("rust:")
        .unwrap_or_else(|| panic!("build stage is not a Rust image: {build}"))
        .1;
    let tag_ver = tag.split('-').next().unwrap();
    assert!(
        ver(tag_ver) >= ver(&need),
        "{tag_ver} < rust-version {need}"
    );

    // Everything from the last FROM on is the image that runs.
    let last_from = ins.iter().rposition(|(i, _)| i == "FROM").unwrap();
    let fin = &ins[last_from..];
    let get = |name: &str| -> Vec<&String> {
        fin.iter()
            .filter(|(i, _)| i == name)
            .map(|(_, a)| a)
            .collect()
    };
    let user = get("USER");
    assert_eq!(user.len(), 1, "{user:?}");
    let uid = user[0].split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "runs as root: {uid}");
    let expose: BTreeSet<&str> = get("EXPOSE")
        .iter()
        .flat_map(|a| a.split_whitespace())
        .collect();
    for port in ["3478/udp", "3478/tcp", "5349/tcp", "9641/tcp"] {
        assert!(expose.contains(port), "EXPOSE lacks {port}: {expose:?}");
    }
    // Sources copied from the build context exist in the repository.
    for (i, args) in &ins {
        if i == "COPY" && !args.starts_with("--from") {
            let parts: Vec<&str> = args.split_whitespace().collect();
            for src in &parts[..parts.len() - 1] {
                assert!(repo(src).exists(), "COPY source {src} does not exist");
            }
        }
    }
    // The binary copied out of the build stage is the one the entrypoint and the health
    // check run.
    let copied = get("COPY")
        .into_iter()
        .find(|a| a.starts_with("--from=build") && a.contains("target/release/turnpike"))
        .expect("the release binary is copied from the build stage")
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    assert!(get("ENTRYPOINT")[0].contains(&format!("\"{copied}\"")));
    // SIGTERM is what starts turnpike's drain.
    assert_eq!(get("STOPSIGNAL"), ["SIGTERM"]);
    let hc = get("HEALTHCHECK");
    assert_eq!(hc.len(), 1);
    let cmd = hc[0].split_once("CMD ").unwrap().1;
    let argv: Vec<String> = serde_json::from_str(cmd).unwrap();
    assert_eq!(argv, [copied.as_str(), "healthcheck"]);
    // The health check finds http.listen through the config the image points at.
    let env = get("ENV");
    let conf = env
        .iter()
        .find_map(|e| e.strip_prefix("TURNPIKE_CONFIG="))
        .expect("ENV TURNPIKE_CONFIG");
    assert!(
        get("COPY")
            .iter()
            .any(|a| a.starts_with("turnserver.toml ") && a.ends_with(conf)),
        "no config copied to {conf}"
    );
}

#[test]
fn container_healthcheck_command_follows_readyz() {
    let dir = Scratch::new("kit-hc");
    let server = Running::start("53920-53929");
    let check = |listen: &str| -> (bool, String) {
        let conf = dir.join("hc.toml");
        std::fs::write(&conf, format!("[http]\nlisten = \"{listen}\"\n")).unwrap();
        run_tool(
            Command::new(BIN)
                .arg("healthcheck")
                .env("TURNPIKE_CONFIG", &conf),
        )
    };
    // A wildcard http.listen (as in the Kubernetes ConfigMap) is checked on loopback.
    let (ok, text) = check(&format!("0.0.0.0:{}", server.http.port()));
    assert!(ok, "{text}");
    let (ok, text) = check(&server.http.to_string());
    assert!(ok, "{text}");

    // A server answering 503 (draining, or a shard down) is unhealthy.
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_addr = fake.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = fake.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.ends_with(b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(n) if n > 0 => req.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
    });
    let (ok, text) = check(&fake_addr.to_string());
    assert!(!ok && text.contains("answered 503"), "{text}");
    t.join().unwrap();

    // Nothing listening: unhealthy, with the address in the message.
    let http = server.http;
    drop(server);
    let (ok, text) = check(&http.to_string());
    assert!(!ok && text.contains(&http.to_string()), "{text}");
}

// ---------------------------------------------------------------- Prometheus, Grafana

#[test]
fn prometheus_alert_rules_check_and_unit_tests_pass() {
    let dir = repo("deploy/prometheus");
    let (ok, text) = run_tool(
        Command::new("promtool")
            .args(["check", "rules", "turnpike-alerts.yml"])
            .current_dir(&dir),
    );
    assert!(
        ok && text.contains("SUCCESS"),
        "promtool check rules:\n{text}"
    );
    let (ok, text) = run_tool(
        Command::new("promtool")
            .args(["test", "rules", "turnpike-alerts.test.yml"])
            .current_dir(&dir),
    );
    assert!(
        ok && text.contains("SUCCESS"),
        "promtool test rules:\n{text}"
    );
    println!("{text}");
    // Every alert has a unit test.
    let rules = std::fs::read_to_string(dir.join("turnpike-alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("turnpike-alerts.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 6, "{alerts:?}");
    for a in alerts {
        assert!(
            tests.contains(&format!("alertname: {a}\n")),
            "{a} has no unit test"
        );
    }
}

/// A selector in a PromQL expression: metric name and its (label, operator, value) matchers.
type Selector = (String, Vec<(String, String, String)>);

/// The metric selectors in a PromQL expression: identifiers that are not functions,
/// aggregations, keywords or label names in by/without/on/ignoring clauses.
fn promql_selectors(expr: &str) -> Vec<Selector> {
    const WORDS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "limitk",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "atan2",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let c: Vec<char> = expr.chars().collect();
    let mut out: Vec<Selector> = Vec::new();
    let mut i = 0;
    let skip_ws = |mut j: usize| {
        while j < c.len() && c[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '"' || ch == '\'' || ch == '`' {
            i += 1;
            while i < c.len() && c[i] != ch {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if ch == '[' {
            while i < c.len() && c[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if ch == '{' {
            // Matchers without a name before them (`{__name__=...}`): not used here.
            let end = (i..c.len()).find(|&j| c[j] == '}').unwrap();
            i = end + 1;
        } else if ch.is_ascii_digit() || ch == '.' {
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                i += 1;
            }
        } else if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let next = skip_ws(i);
            if GROUPING.contains(&word.as_str()) {
                if next < c.len() && c[next] == '(' {
                    i = (next..c.len()).find(|&j| c[j] == ')').unwrap() + 1;
                }
            } else if WORDS.contains(&word.as_str()) || (next < c.len() && c[next] == '(') {
                // An aggregation or a function call.
            } else if next < c.len() && c[next] == '{' {
                let end = (next..c.len()).find(|&j| c[j] == '}').unwrap();
                let body: String = c[next + 1..end].iter().collect();
                let matchers = body
                    .split(',')
                    .filter(|m| !m.trim().is_empty())
                    .map(|m| {
                        let op_at = m.find(['=', '!']).unwrap();
                        let label = m[..op_at].trim().to_owned();
                        let rest = &m[op_at..];
                        let op_len = if rest.starts_with("=~")
                            || rest.starts_with("!=")
                            || rest.starts_with("!~")
                        {
                            2
                        } else {
                            1
                        };
                        let value = rest[op_len..].trim().trim_matches('"').to_owned();
                        (label, rest[..op_len].to_owned(), value)
                    })
                    .collect();
                out.push((word, matchers));
                i = end + 1;
            } else {
                out.push((word, vec![]));
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn promql_selector_extraction() {
    let got = promql_selectors(
        "sum by (instance, le) (rate(turnpike_x_bucket{job=\"t\", reason!=\"a b\"}[5m])) \
         / on (instance) group_left (version) max(up) > bool 0.85 and process_open_fds",
    );
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["turnpike_x_bucket", "up", "process_open_fds"]);
    assert_eq!(
        got[0].1,
        [
            ("job".into(), "=".into(), "t".into()),
            ("reason".into(), "!=".into(), "a b".into())
        ]
    );
}

/// Every PromQL expression in the Grafana dashboard, with Grafana's variables resolved
/// the way a dashboard would.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo("deploy/grafana/turnpike.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).expect("dashboard JSON parses");
    assert!(dash["title"].is_string() && dash["uid"].is_string());
    let mut exprs = Vec::new();
    let mut ids = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        assert!(p["gridPos"]["w"].as_u64().unwrap() > 0);
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            exprs.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["definition"].as_str() {
            // label_values(metric, label)
            let inner = q.strip_prefix("label_values(").unwrap();
            exprs.push(inner.split(',').next().unwrap().trim().to_owned());
        }
    }
    exprs
        .into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "5m")
                .replace("$instance", ".*")
        })
        .collect()
}

#[test]
fn dashboard_queries_are_valid_promql() {
    // promtool has no expression checker; recording rules made of the queries get one.
    let dir = Scratch::new("kit-promql");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 15, "{}", exprs.len());
    for (i, e) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    std::fs::write(dir.join("rules.yml"), &rules).unwrap();
    let (ok, text) = run_tool(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(dir.join("rules.yml")),
    );
    assert!(ok, "dashboard queries:\n{text}\n{rules}");
}

/// A STUN request of `method` with optional attribute bytes.
fn stun(method: u16, attrs: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend(method.to_be_bytes());
    m.extend((attrs.len() as u16).to_be_bytes());
    m.extend(0x2112_A442u32.to_be_bytes());
    m.extend(rand::random::<[u8; 12]>());
    m.extend(attrs);
    m
}

#[test]
fn dashboard_and_alerts_use_only_metrics_turnpike_exports() {
    let server = Running::start("53930-53939");
    // A Binding and an Allocate without credentials (answered 401): request counters only
    // have series for what happened.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let requested_transport_udp = [0x00, 0x19, 0x00, 0x04, 17, 0, 0, 0];
    for msg in [stun(0x0001, &[]), stun(0x0003, &requested_transport_udp)] {
        sock.send_to(&msg, server.udp).unwrap();
        let mut buf = [0u8; 1500];
        sock.recv_from(&mut buf).expect("an answer");
    }
    let (status, _, scrape) = http_get(server.http, "GET", "/metrics", &[]);
    assert_eq!(status, 200);
    let types: BTreeMap<&str, &str> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert!(types.len() > 15, "{scrape}");

    let mut selectors: Vec<(String, Selector)> = dashboard_exprs()
        .iter()
        .flat_map(|e| promql_selectors(e))
        .map(|s| ("dashboard".to_owned(), s))
        .collect();
    let rules: Vec<Value> = yaml_docs(&repo("deploy/prometheus/turnpike-alerts.yml"));
    for g in rules[0]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let name = r["alert"].as_str().unwrap().to_owned();
            for s in promql_selectors(r["expr"].as_str().unwrap()) {
                selectors.push((name.clone(), s));
            }
        }
    }
    let names: BTreeSet<&str> = selectors.iter().map(|(_, (n, _))| n.as_str()).collect();
    assert!(names.len() >= 15, "{names:?}");
    for (used_by, (name, matchers)) in &selectors {
        // `up` is written by Prometheus itself for every scrape target.
        if name == "up" {
            continue;
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|base| types.get(base) == Some(&"histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "{used_by} uses {name}, which turnpike does not export"
        );
        // Label values compared for equality (or listed in a plain alternation) exist, so
        // a misspelt reason or method cannot silently match nothing.
        for (label, _, value) in matchers {
            if ["job", "instance"].contains(&label.as_str())
                || value.contains(['.', '*', '+', '?', '(', '[', '\\', '^', '$'])
            {
                continue;
            }
            for v in value.split('|') {
                let want = format!("{label}=\"{v}\"");
                assert!(
                    scrape
                        .lines()
                        .any(|l| l.starts_with(&format!("{name}{{")) && l.contains(&want)),
                    "{used_by}: no series {name}{{{want}}} in /metrics"
                );
            }
        }
    }
}
