//! What ships beside the binary (contrib/), checked without PID-1 systemd
//! or a cluster: the systemd unit verifies (its man pages included) and
//! stays hardened; the Kubernetes manifest has the structure a DaemonSet
//! needs; and each runs its socktrace command on the real kernel with only
//! the capabilities it grants.
mod common;

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::*;
use serde_json::Value;

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib")
        .join(path)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn systemd_analyze(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("systemd-analyze runs (Debian's systemd package; it needs no running systemd)")
}

/// `Key=Value` settings of the unit's `[Service]` section, in order.
fn service_settings(unit: &str) -> Vec<(String, String)> {
    let mut section = "";
    let mut settings = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]"
            && !line.starts_with('#')
            && let Some((key, value)) = line.split_once('=')
        {
            settings.push((key.to_string(), value.to_string()));
        }
    }
    settings
}

fn setting<'a>(settings: &'a [(String, String)], key: &str) -> &'a str {
    let values: Vec<&str> = settings
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(values.len(), 1, "{key}= in socktrace.service: {values:?}");
    values[0]
}

/// The unit with its ExecStart naming the binary under test instead of
/// /usr/sbin/socktrace (systemd-analyze checks that it exists).
fn unit_for_test(dir: &Path) -> PathBuf {
    let unit = read(&contrib("socktrace.service"));
    let bin = socktrace_bin();
    assert!(unit.contains("ExecStart=/usr/sbin/socktrace "));
    let path = dir.join("socktrace.service");
    fs::write(
        &path,
        unit.replace("/usr/sbin/socktrace", &bin.display().to_string()),
    )
    .expect("writing the unit");
    path
}

#[test]
fn service_unit_verifies_with_its_man_pages() {
    let dir = scratch_dir("unit-verify");
    let docs = dir.join("docs");
    let generated = Command::new(socktrace_bin())
        .arg("__generate")
        .arg(&docs)
        .status()
        .expect("socktrace __generate");
    assert!(generated.success());
    let unit = unit_for_test(&dir);
    // Documentation=man:... is checked against the generated pages.
    let out = systemd_analyze(
        &["verify", unit.to_str().expect("UTF-8 path")],
        &[("MANPATH", &docs)],
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.is_empty(),
        "{}: {said}",
        out.status
    );
    fs::remove_dir_all(&dir).expect("cleaning up");
}

#[test]
fn service_unit_stays_hardened() {
    let dir = scratch_dir("unit-security");
    let unit = unit_for_test(&dir);
    // Exposure 2.2 of 10 now ("OK"); --threshold is on a 0-100 scale.
    let out = systemd_analyze(
        &[
            "security",
            "--offline=true",
            "--threshold=25",
            unit.to_str().expect("UTF-8 path"),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "socktrace.service is exposed above 2.5:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::remove_dir_all(&dir).expect("cleaning up");
}

/// Runs socktrace with `args` (a `timewait --json` command line) as root
/// with only `caps` (lower case, no `cap_` prefix), as a service or pod
/// would: a short interval, loopback metrics on a free port, one second.
fn runs_with_only(caps: &BTreeSet<String>, args: &[String]) {
    require_root();
    let mut args = args.to_vec();
    for (flag, value) in [("--metrics", "127.0.0.1:0"), ("--interval", "0.2")] {
        let at = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} in {args:?}"));
        args[at + 1] = value.into();
    }
    args.extend(["--duration".into(), "1".into()]);
    let bounding: String = caps.iter().map(|c| format!(",+{c}")).collect();
    let out = Command::new("setpriv")
        .args(["--inh-caps=-all", "--ambient-caps=-all"])
        .arg(format!("--bounding-set=-all{bounding}"))
        .arg("--")
        .arg(socktrace_bin())
        .args(&args)
        .output()
        .expect("setpriv (util-linux) runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {}: {stderr}", out.status);
    assert!(stderr.contains("attached in"), "{stderr}");
    assert!(!stderr.contains("cannot"), "{stderr}");
    // Nothing lost: owners of sockets older than socktrace come from the
    // kernel's own walk of descriptors (an iterator), which these allow.
    let degraded: Vec<&str> = stderr.lines().filter(|l| l.contains("degraded")).collect();
    assert_eq!(degraded, Vec::<&str>::new(), "{stderr}");
    let lines = records(&String::from_utf8_lossy(&out.stdout));
    let types: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    assert!(types.len() >= 2, "{types:?}");
    assert!(types[..types.len() - 1].iter().all(|t| *t == "timewait"));
    assert_eq!(types.last(), Some(&"summary"));
}

#[test]
fn service_command_runs_with_only_the_units_capabilities() {
    let settings = service_settings(&read(&contrib("socktrace.service")));
    let caps = |key| -> BTreeSet<String> {
        setting(&settings, key)
            .split_whitespace()
            .map(|c| {
                c.strip_prefix("CAP_")
                    .unwrap_or_else(|| panic!("{key}: {c}"))
                    .to_lowercase()
            })
            .collect()
    };
    let bounding = caps("CapabilityBoundingSet");
    assert_eq!(bounding, caps("AmbientCapabilities"));
    assert_eq!(
        bounding,
        BTreeSet::from(["bpf".to_string(), "perfmon".to_string()])
    );
    assert!(!settings.iter().any(|(k, _)| k == "User"), "runs as root");
    let exec: Vec<String> = setting(&settings, "ExecStart")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(exec[0], "/usr/sbin/socktrace");
    assert_eq!(exec[1..3], ["timewait", "--json"]);
    runs_with_only(&bounding, &exec[1..]);
}

/// The manifest's documents, as JSON values.
fn manifest() -> Vec<Value> {
    let text = read(&contrib("k8s/socktrace.yaml"));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            <Value as serde::Deserialize>::deserialize(doc).expect("socktrace.yaml is valid YAML")
        })
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("a string: {s}")))
        .collect()
}

/// The DaemonSet's container.
fn container(docs: &[Value]) -> &Value {
    let containers = &of_kind(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers.as_array().map(Vec::len),
        Some(1),
        "one container"
    );
    &containers[0]
}

#[test]
fn daemonset_manifest_has_what_a_node_agent_needs() {
    let docs = manifest();
    assert_eq!(docs.len(), 3);
    for doc in &docs {
        assert!(doc["apiVersion"].is_string() && doc["kind"].is_string());
        assert!(doc["metadata"]["name"] == "socktrace", "{doc}");
    }
    let namespace = of_kind(&docs, "Namespace");
    assert_eq!(namespace["apiVersion"], "v1");
    for kind in ["ServiceAccount", "DaemonSet"] {
        assert_eq!(of_kind(&docs, kind)["metadata"]["namespace"], "socktrace");
    }
    assert_eq!(of_kind(&docs, "ServiceAccount")["apiVersion"], "v1");
    let ds = of_kind(&docs, "DaemonSet");
    assert_eq!(ds["apiVersion"], "apps/v1");
    let template = &ds["spec"]["template"];
    let labels = template["metadata"]["labels"].as_object().expect("labels");
    for (key, value) in ds["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("a selector")
    {
        assert_eq!(labels.get(key), Some(value), "selector {key}");
    }
    let pod = &template["spec"];
    assert_eq!(pod["serviceAccountName"], "socktrace");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(
        (&pod["hostPID"], &pod["hostNetwork"]),
        (&true.into(), &true.into())
    );

    let c = container(&docs);
    let image = c["image"].as_str().expect("an image");
    assert_eq!(
        image.rsplit_once(':').map(|(_, tag)| tag),
        Some(env!("CARGO_PKG_VERSION")),
        "the image is tagged with socktrace's version"
    );
    let args = strings(&c["args"]);
    assert_eq!(args[..2], ["timewait", "--json"]);
    let metrics = args
        .iter()
        .position(|a| *a == "--metrics")
        .map(|i| args[i + 1])
        .expect("--metrics ADDR");
    let port: u16 = metrics
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("ADDR has a port");
    assert!(metrics.starts_with("0.0.0.0:"), "served beyond the node");

    // The metrics port: exposed, named, probed and announced to Prometheus.
    let ports = c["ports"].as_array().expect("ports");
    let exposed = ports
        .iter()
        .find(|p| p["containerPort"] == port)
        .expect("the metrics port among the container's ports");
    assert_eq!(
        exposed["hostPort"], port,
        "hostNetwork: hostPort = containerPort"
    );
    let name = exposed["name"].as_str().expect("a named port");
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], name, "{probe}");
        assert_eq!(c[probe]["httpGet"]["path"], "/metrics", "{probe}");
    }
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], port.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    let security = &c["securityContext"];
    let added = strings(&security["capabilities"]["add"]);
    assert!(
        added.contains(&"BPF") && added.contains(&"PERFMON"),
        "{added:?}"
    );
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(security["privileged"], false);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["runAsUser"], 0, "tracefs is root's");

    for kind in ["requests", "limits"] {
        let r = &c["resources"][kind];
        assert!(r["cpu"].is_string() && r["memory"].is_string(), "{kind}");
    }

    // Every mount has its volume and every volume is mounted; what
    // socktrace reads from the host is there, read-only.
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    let volumes = pod["volumes"].as_array().expect("volumes");
    let mounted: BTreeSet<&str> = mounts.iter().filter_map(|m| m["name"].as_str()).collect();
    let declared: BTreeSet<&str> = volumes.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(mounted, declared);
    assert_eq!(mounted.len(), mounts.len(), "one mount a volume");
    for path in ["/sys/kernel/btf", "/sys/kernel/tracing", "/sys/fs/cgroup"] {
        let mount = mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("{path} mounted"));
        assert_eq!(mount["readOnly"], true, "{path}");
        let volume = volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("its volume");
        assert_eq!(volume["hostPath"]["path"], path, "the host's {path}");
    }
}

#[test]
fn daemonset_command_runs_with_only_the_containers_capabilities() {
    let docs = manifest();
    let c = container(&docs);
    let caps: BTreeSet<String> = strings(&c["securityContext"]["capabilities"]["add"])
        .iter()
        .map(|c| c.to_lowercase())
        .collect();
    let args: Vec<String> = strings(&c["args"]).into_iter().map(String::from).collect();
    runs_with_only(&caps, &args);
}
