//! `sluice deploy kubernetes --config FILE --out DIR`: a Kustomize overlay on
//! `deploy/kubernetes/base` with, per model endpoint, a worker Deployment sized from its config
//! (GPUs, GPU types, grace period) and a KEDA ScaledObject on the gateways' external scaler;
//! the configs themselves become ConfigMaps.

use anyhow::Context;
use protocol::config::Deployment;
use protocol::ModelConfig;
use serde_json::{json, Value};
use std::path::PathBuf;

/// What the generator is told.
pub struct Options {
    /// The platform config whose model endpoints get workers.
    pub config: PathBuf,
    /// The overlay directory to write.
    pub out: PathBuf,
    /// The base, relative to `out`.
    pub base: String,
    /// The namespace everything goes in (the scaler's address names it).
    pub namespace: String,
    /// The sluice image (`NAME:TAG`), built with `--features cuda` for GPU endpoints.
    pub image: String,
}

/// A Kubernetes name for an endpoint: lowercase, `.` and `_` as `-`.
fn dns_name(endpoint: &str) -> String {
    endpoint.to_ascii_lowercase().replace(['.', '_'], "-")
}

/// The GPU types a worker Deployment may land on (those taking as many GPUs as the first
/// choice: one Deployment has one GPU count), and that count.
fn gpu_placement(m: &ModelConfig) -> (Vec<&str>, u32) {
    let Some(first) = m.gpu.first() else {
        return (Vec::new(), m.scaling.gpus_per_worker);
    };
    let types = m
        .gpu
        .iter()
        .filter(|c| c.gpus_per_worker == first.gpus_per_worker)
        .map(|c| c.gpu_type.as_str())
        .collect();
    (types, first.gpus_per_worker)
}

/// Required: a node labelled with one of the types (`sluice.dev/gpu-type`); preferred: the
/// config's order.
fn affinity(types: &[&str]) -> Value {
    let preferred: Vec<Value> = types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"weight": 100 - 10 * i.min(9) as i64, "preference": {"matchExpressions": [
                {"key": "sluice.dev/gpu-type", "operator": "In", "values": [t]}]}})
        })
        .collect();
    json!({"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "sluice.dev/gpu-type", "operator": "In", "values": types}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": preferred,
    }})
}

/// Resources of one worker: its GPUs, its CPU threads, and host memory for the weights (mmap,
/// page cache) plus 2 GiB.
fn resources(m: &ModelConfig, gpus: u32) -> Value {
    let weights_gib = m
        .architecture
        .as_ref()
        .map_or(1, |a| a.weight_bytes.div_ceil(1 << 30));
    let memory = format!("{}Gi", weights_gib + 2);
    let cpu = m.engine.cpu_threads.max(1).to_string();
    let mut limits = json!({"cpu": cpu, "memory": format!("{}Gi", 2 * (weights_gib + 2))});
    if gpus > 0 {
        limits["nvidia.com/gpu"] = json!(gpus.to_string());
    }
    json!({"requests": {"cpu": cpu, "memory": memory}, "limits": limits})
}

/// The worker Deployment of model endpoint `m` (0 replicas: KEDA scales it).
fn worker(m: &ModelConfig, image: &str) -> Value {
    let name = format!("sluice-worker-{}", dns_name(&m.name));
    let labels = json!({"app.kubernetes.io/name": "sluice-worker", "app.kubernetes.io/component": "worker",
        "sluice.dev/endpoint": dns_name(&m.name)});
    let (types, gpus) = gpu_placement(m);
    let mut pod = json!({
        "automountServiceAccountToken": false,
        // A drained worker finishes its jobs (up to the execution timeout) before it exits.
        "terminationGracePeriodSeconds": m.scaling.execution_timeout_secs + 30,
        "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "worker",
            "image": image,
            "imagePullPolicy": "Always",
            "args": ["worker", "--config=/etc/sluice/sluice.toml", format!("--endpoint={}", m.name),
                "--gateway=http://sluice-gateway:8080", "--worker-id=$(POD_NAME)"],
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "SLUICE_HOME", "value": "/var/cache/sluice"},
                {"name": "SLUICE_WORKER_TOKEN", "valueFrom": {"secretKeyRef": {"name": "sluice-worker-token", "key": "token"}}},
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "sluice-hf-token", "key": "token", "optional": true}}},
            ],
            "resources": resources(m, gpus),
            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/sluice"},
                {"name": "models", "mountPath": "/etc/sluice/models"},
                {"name": "cache", "mountPath": "/var/cache/sluice"},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        }],
        "volumes": [
            {"name": "config", "configMap": {"name": "sluice-config"}},
            {"name": "models", "configMap": {"name": "sluice-models"}},
            // The disk tier, shared by the node's workers (file locks keep them apart). A
            // hostPath gets no fsGroup: the node's directory must belong to uid 10001.
            {"name": "cache", "hostPath": {"path": "/var/cache/sluice", "type": "DirectoryOrCreate"}},
            // The root filesystem is read-only.
            {"name": "tmp", "emptyDir": {}},
        ],
    });
    if !types.is_empty() {
        pod["affinity"] = affinity(&types);
        pod["tolerations"] =
            json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]);
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "annotations": {
            "checkov.io/skip1": "CKV_K8S_8=a worker serves no port: the gateway tracks its liveness by its pings (worker_timeout_secs) and requeues the jobs of a silent one",
            "checkov.io/skip2": "CKV_K8S_9=a worker serves no port: it takes jobs only once loaded, so it needs no readiness gate",
        }},
        "spec": {"replicas": 0, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod}},
    })
}

/// The KEDA ScaledObject of model endpoint `m`: the gateways' scaler (push: a first job wakes
/// it at once), bounds from its scaling settings.
fn scaled_object(m: &ModelConfig, namespace: &str) -> Value {
    let name = format!("sluice-worker-{}", dns_name(&m.name));
    let s = &m.scaling;
    json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"name": name},
            "minReplicaCount": s.min_workers,
            "maxReplicaCount": s.max_workers,
            "pollingInterval": 5,
            // The metric already waits out the idle timeout; KEDA adds no delay of its own.
            "cooldownPeriod": s.idle_timeout_secs,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {
                "stabilizationWindowSeconds": 0}}}},
            "triggers": [{"type": "external-push", "metadata": {
                "scalerAddress": format!("sluice-gateway.{namespace}.svc.cluster.local:9090"),
                "endpoint": m.name,
            }}],
        },
    })
}

fn yaml(docs: &[Value]) -> anyhow::Result<String> {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(d).context("writing YAML")?);
    }
    Ok(out)
}

/// Write the overlay. Errors: the config does not load, or a file cannot be written.
pub fn kubernetes(o: &Options) -> anyhow::Result<()> {
    let dep = Deployment::load(&o.config)?;
    let g = &dep.config.gateway;
    anyhow::ensure!(
        g.api_keys.is_empty() && g.keys.iter().all(|k| k.key.is_none()),
        "{}: gateway.api_keys and keys with `key = ...` would put client keys in a ConfigMap; \
         in a cluster use `key_env` (the generator passes it from the Secret sluice-client-keys) \
         or `key_sha256`",
        o.config.display()
    );
    if !dep.config.gateway.has_client_keys() {
        eprintln!(
            "sluice: warning: {} has no client keys; gateways listen on 0.0.0.0 in the cluster \
             and will refuse to start without them (see README, Security)",
            o.config.display()
        );
    }
    let config_dir = o.out.join("config");
    std::fs::create_dir_all(config_dir.join("models"))?;
    let mut platform = dep.config.clone();
    platform.models_dir = "models".into();
    platform.gpu_table = "gpus.toml".into();
    std::fs::write(
        config_dir.join("sluice.toml"),
        toml::to_string(&platform).context("writing sluice.toml")?,
    )?;
    let table = dep.base_dir.join(&dep.config.gpu_table);
    std::fs::copy(&table, config_dir.join("gpus.toml"))
        .with_context(|| format!("copying {}", table.display()))?;
    let mut docs = Vec::new();
    let mut model_files = Vec::new();
    for m in &dep.models {
        let file = format!("{}.toml", m.name);
        std::fs::write(
            config_dir.join("models").join(&file),
            toml::to_string(m).context("writing a model config")?,
        )?;
        model_files.push(format!("config/models/{file}"));
        docs.push(worker(m, &o.image));
        docs.push(scaled_object(m, &o.namespace));
    }
    std::fs::write(o.out.join("workers.yaml"), yaml(&docs)?)?;
    let (image, tag) = o.image.rsplit_once(':').unwrap_or((&o.image, "latest"));
    // Each `key_env` reaches the gateways from the Secret sluice-client-keys.
    let key_env: Vec<Value> = g
        .keys
        .iter()
        .filter_map(|k| k.key_env.as_deref())
        .map(|e| json!({"name": e, "valueFrom": {"secretKeyRef": {"name": "sluice-client-keys", "key": e}}}))
        .collect();
    let patch = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sluice-gateway"},
        "spec": {"template": {"spec": {"containers": [{"name": "gateway", "env": key_env}]}}}});
    let patches = if key_env.is_empty() {
        json!([])
    } else {
        json!([{"patch": serde_saphyr::to_string(&patch)?}])
    };
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": o.namespace,
        "resources": [o.base, "workers.yaml"],
        "configMapGenerator": [
            {"name": "sluice-config", "files": ["config/sluice.toml", "config/gpus.toml"]},
            {"name": "sluice-models", "files": model_files},
        ],
        "images": [{"name": "sluice", "newName": image, "newTag": tag}],
        "patches": patches,
    });
    let header = format!(
        "# Written by `sluice deploy kubernetes --config {}`; regenerate rather than edit.\n",
        o.config.display()
    );
    std::fs::write(
        o.out.join("kustomization.yaml"),
        header + &serde_saphyr::to_string(&kustomization)?,
    )?;
    println!("{}", o.out.display());
    Ok(())
}

/// The relative path from `out` to `base` is the user's to give; this is the default for
/// overlays kept under `deploy/kubernetes/overlays/NAME`.
pub const DEFAULT_BASE: &str = "../../base";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_placement() {
        assert_eq!(dns_name("Qwen2.5-7b_x"), "qwen2-5-7b-x");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/models");
        let m = ModelConfig::find(&dir, "llama-3.3-70b-instruct").unwrap();
        // H200 takes one GPU, the H100 and A100 entries two: the Deployment follows the first.
        let (types, gpus) = gpu_placement(&m);
        assert_eq!((types, gpus), (vec!["H200-141GB"], 1));
        let d = worker(&m, "sluice:1");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
        assert_eq!(
            d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
            630
        );
        let so = scaled_object(&m, "ns");
        assert_eq!(
            so["spec"]["triggers"][0]["metadata"]["scalerAddress"],
            "sluice-gateway.ns.svc.cluster.local:9090"
        );
    }
}
