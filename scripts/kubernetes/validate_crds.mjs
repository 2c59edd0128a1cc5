// Validates the custom resources of rendered manifests (stdin: YAML, many documents) against
// their CRD schemas, as packaged by kubernetes-models-ts (generated from KEDA's and the
// Prometheus Operator's CRDs): ScaledObject (keda.sh/v1alpha1), ServiceMonitor
// (monitoring.coreos.com/v1). Prints one line per checked resource; exits 1 on the first
// invalid one, 2 when a custom kind has no schema here.
// Usage: node validate_crds.mjs TOOLS_DIR < rendered.yaml
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const tools = process.argv[2];
const load = async (p) => import(pathToFileURL(join(tools, "node_modules", p)).href);
const yaml = (await load("js-yaml/dist/js-yaml.mjs")).default;
const kinds = {
  "keda.sh/v1alpha1/ScaledObject": (await load("@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject.js")).ScaledObject,
  "monitoring.coreos.com/v1/ServiceMonitor": (await load("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js")).ServiceMonitor,
};
const builtin = /^(v1|apps\/v1|policy\/v1|networking\.k8s\.io\/v1)\//;
let checked = 0;
for (const doc of yaml.loadAll(readFileSync(0, "utf8"))) {
  if (!doc) continue;
  const key = `${doc.apiVersion}/${doc.kind}`;
  if (builtin.test(key)) continue; // kubernetes-validate checks these
  const Model = kinds[key];
  if (!Model) {
    console.error(`no schema for ${key} (${doc.metadata?.name})`);
    process.exit(2);
  }
  try {
    new Model(doc).validate();
  } catch (e) {
    console.error(`INVALID ${key} ${doc.metadata?.name}: ${e.message}`);
    process.exit(1);
  }
  console.log(`valid ${key} ${doc.metadata.name}`);
  checked++;
}
console.log(`${checked} custom resources valid`);
