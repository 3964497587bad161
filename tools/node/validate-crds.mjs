// Validate custom resources (Prometheus Operator, KEDA) against their CRDs' schemas, with the
// @kubernetes-models packages generated from those CRDs.
// Usage: kustomize build deploy/overlays/production | node tools/node/validate-crds.mjs
// Prints one line per custom resource; exits 1 if one is invalid or of an unknown kind.
import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import { PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1";

const MODELS = {
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
};
const BUILTIN = /^(v1|apps\/v1|autoscaling\/v2|policy\/v1|batch\/v1|networking\.k8s\.io\/v1)$/;

let failed = false;
for (const doc of yaml.loadAll(readFileSync(0, "utf8"))) {
  if (!doc || BUILTIN.test(doc.apiVersion)) continue;
  const key = `${doc.apiVersion}/${doc.kind}`;
  const Model = MODELS[key];
  const name = `${key} ${doc.metadata?.name}`;
  if (!Model) {
    console.log(`UNKNOWN ${name}`);
    failed = true;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`valid ${name}`);
  } catch (error) {
    console.log(`INVALID ${name}: ${error.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
