/**
 * Shared helpers of the chart, manifest and workflow tests: locating the pinned tools,
 * rendering the chart, and validating rendered objects strictly and offline.
 *
 * Tools are looked up in .tools/bin (scripts/install-tools.sh) and then on PATH. A missing
 * tool is an error, never a skip: these checks are the only proof the deployment works.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import * as apps from 'kubernetes-models/apps/v1';
import * as autoscaling from 'kubernetes-models/autoscaling/v2';
import * as batch from 'kubernetes-models/batch/v1';
import * as networking from 'kubernetes-models/networking.k8s.io/v1';
import * as policy from 'kubernetes-models/policy/v1';
import * as rbac from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import * as core from 'kubernetes-models/v1';
import { parseAllDocuments, stringify } from 'yaml';

export const ROOT = resolve(import.meta.dirname, '../..');
export const CHART = join(ROOT, 'charts/fib-rpc');
export const CI_VALUES_DIR = join(CHART, 'ci');
const TOOLS = join(ROOT, '.tools');

/** KEDA version of the CRD schemas (scripts/install-tools.sh fetches them). */
export const KEDA_VERSION = 'v2.21.0';
/** Kubernetes version the renders assume (the kind e2e runs 1.35). */
export const KUBE_VERSION = '1.35.0';
/** API groups the chart gates on with .Capabilities; renders pass them like a cluster with KEDA would. */
export const OPTIONAL_APIS = ['keda.sh/v1alpha1', 'monitoring.coreos.com/v1'];

/** Path of a tool: .tools/bin first, then PATH. Throws (fails the test) when missing. */
export function tool(name: string): string {
  const candidates = [join(TOOLS, 'bin'), ...(process.env.PATH ?? '').split(delimiter)];
  for (const dir of candidates) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  throw new Error(`${name} is not installed (.tools/bin or PATH): run \`bash scripts/install-tools.sh\``);
}

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function run(command: string, args: readonly string[], input?: string): RunResult {
  const result = spawnSync(command, args, {
    cwd: ROOT,
    encoding: 'utf8',
    input,
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, HELM_CACHE_HOME: join(TOOLS, 'helm/cache'), HELM_CONFIG_HOME: join(TOOLS, 'helm/config') },
  });
  if (result.error) throw result.error;
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/** A rendered Kubernetes object. Fields beyond these are read through the typed helpers below. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

export interface RenderOptions {
  values?: readonly string[];
  set?: readonly string[];
  apiVersions?: readonly string[];
  release?: string;
  namespace?: string;
  showOnly?: string;
  skipTests?: boolean;
}

export function helmTemplateArgs(options: RenderOptions = {}): string[] {
  const args = ['template', options.release ?? 'fib-rpc', CHART, '--namespace', options.namespace ?? 'fib-rpc'];
  // A fixed cluster version: a helm built without release ldflags would assume an old one.
  args.push('--kube-version', KUBE_VERSION);
  for (const file of options.values ?? []) args.push('--values', file);
  for (const pair of options.set ?? []) args.push('--set', pair);
  for (const api of options.apiVersions ?? OPTIONAL_APIS) args.push('--api-versions', api);
  if (options.showOnly) args.push('--show-only', options.showOnly);
  if (options.skipTests) args.push('--skip-tests');
  return args;
}

/** `helm template` output; throws with helm's message when the render fails. */
export function helmTemplate(options: RenderOptions = {}): string {
  const result = run(tool('helm'), helmTemplateArgs(options));
  if (result.status !== 0) throw new Error(`helm template failed:\n${result.stderr}`);
  return result.stdout;
}

/** Every non-empty YAML document of a multi-document text. */
export function parseManifests(text: string): K8sObject[] {
  const objects: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`invalid YAML: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    if (typeof value !== 'object' || Array.isArray(value)) throw new Error(`not an object: ${JSON.stringify(value)}`);
    objects.push(value as K8sObject);
  }
  return objects;
}

export function render(options: RenderOptions = {}): K8sObject[] {
  return parseManifests(helmTemplate(options));
}

/** The values files of charts/fib-rpc/ci, as absolute paths. */
export function ciValuesFiles(): string[] {
  return readdirSync(CI_VALUES_DIR)
    .filter((name) => name.endsWith('-values.yaml'))
    .sort()
    .map((name) => join(CI_VALUES_DIR, name));
}

export function find(objects: readonly K8sObject[], kind: string, name?: string): K8sObject[] {
  return objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
}

export function only(objects: readonly K8sObject[], kind: string, name?: string): K8sObject {
  const found = find(objects, kind, name);
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0] as K8sObject;
}

// ---------- typed views of the objects the checks read ----------

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string } };
}

export interface Probe {
  httpGet?: { path?: string; port: number | string };
  tcpSocket?: { port: number | string };
  exec?: { command: string[] };
}

export interface Container {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  securityContext?: {
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    runAsNonRoot?: boolean;
    privileged?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    seccompProfile?: { type: string };
  };
}

export interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type: string } };
  terminationGracePeriodSeconds?: number;
  automountServiceAccountToken?: boolean;
  restartPolicy?: string;
}

export interface PodTemplate {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: PodSpec;
}

/** The pod template of a workload, or the spec of a bare Pod. */
export function podTemplate(object: K8sObject): PodTemplate | undefined {
  const spec = object.spec as Record<string, unknown> | undefined;
  if (!spec) return undefined;
  if (object.kind === 'Pod') return { metadata: object.metadata, spec: spec as unknown as PodSpec };
  if (object.kind === 'CronJob') {
    const jobTemplate = spec.jobTemplate as { spec?: { template?: PodTemplate } } | undefined;
    return jobTemplate?.spec?.template;
  }
  const template = spec.template as PodTemplate | undefined;
  return template?.spec?.containers ? template : undefined;
}

export function spec<T>(object: K8sObject): T {
  return object.spec as T;
}

// ---------- strict offline validation ----------

/**
 * kubernetes-models for the built-in kinds: types, formats and required fields from the
 * Kubernetes OpenAPI schemas. (Unknown fields are caught by kube-validate.)
 */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ConfigMap': core.ConfigMap,
  'v1/Secret': core.Secret,
  'v1/Service': core.Service,
  'v1/ServiceAccount': core.ServiceAccount,
  'v1/Pod': core.Pod,
  'v1/Namespace': core.Namespace,
  'apps/v1/Deployment': apps.Deployment,
  'apps/v1/StatefulSet': apps.StatefulSet,
  'batch/v1/Job': batch.Job,
  'batch/v1/CronJob': batch.CronJob,
  'policy/v1/PodDisruptionBudget': policy.PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': autoscaling.HorizontalPodAutoscaler,
  'networking.k8s.io/v1/NetworkPolicy': networking.NetworkPolicy,
  'rbac.authorization.k8s.io/v1/Role': rbac.Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': rbac.RoleBinding,
};

/** Prometheus Operator kinds: kube-validate decodes them strictly with the operator's own Go types. */
const PROMETHEUS_OPERATOR_KINDS = new Set([
  'monitoring.coreos.com/v1/ServiceMonitor',
  'monitoring.coreos.com/v1/PodMonitor',
  'monitoring.coreos.com/v1/PrometheusRule',
]);

type JsonSchema = Record<string, unknown>;

/** Makes a CRD's structural schema reject unknown fields, as the API server's strict field validation does. */
function strictSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(strictSchema);
  if (node === null || typeof node !== 'object') return node;
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(node)) out[key] = strictSchema(value);
  if (
    out.properties &&
    out.additionalProperties === undefined &&
    out['x-kubernetes-preserve-unknown-fields'] !== true
  ) {
    out.additionalProperties = false;
  }
  return out;
}

let crdValidators: Map<string, ValidateFunction> | undefined;

/** Validators of the KEDA CRDs (keda.sh/v1alpha1), built from the schemas in KEDA's own module. */
function kedaValidators(): Map<string, ValidateFunction> {
  if (crdValidators) return crdValidators;
  const dir = join(TOOLS, 'crds', `keda-${KEDA_VERSION}`);
  const files = ['keda.sh_scaledobjects.yaml', 'keda.sh_triggerauthentications.yaml'];
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  const validators = new Map<string, ValidateFunction>();
  for (const file of files) {
    const path = join(dir, file);
    if (!existsSync(path)) throw new Error(`KEDA CRD ${path} is missing: run \`bash scripts/install-tools.sh\``);
    const [crd] = parseManifests(readFileSync(path, 'utf8'));
    const crdSpec = crd?.spec as
      | { group: string; names: { kind: string }; versions: { name: string; schema: { openAPIV3Schema: unknown } }[] }
      | undefined;
    if (!crdSpec) throw new Error(`${path} is not a CRD`);
    for (const version of crdSpec.versions) {
      const schema = strictSchema(version.schema.openAPIV3Schema) as JsonSchema;
      validators.set(`${crdSpec.group}/${version.name}/${crdSpec.names.kind}`, ajv.compile(schema));
    }
  }
  crdValidators = validators;
  return validators;
}

interface KubeValidateLine {
  index: number;
  kind: string;
  name: string;
  errors: string[];
}

/** Strict decoding with the Kubernetes Go types (unknown and duplicate fields, wrong types, unknown kinds). */
function kubeValidate(objects: readonly K8sObject[]): string[][] {
  if (objects.length === 0) return [];
  const text = objects.map((o) => stringify(o)).join('---\n');
  const result = run(tool('kube-validate'), ['-'], text);
  if (result.status !== 0 && result.status !== 1) throw new Error(`kube-validate failed: ${result.stderr}`);
  const lines = result.stdout
    .trim()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as KubeValidateLine);
  if (lines.length !== objects.length) {
    throw new Error(`kube-validate reported ${lines.length} documents for ${objects.length} objects`);
  }
  return lines.map((line) => line.errors);
}

/**
 * Validates every object strictly and offline. Returns "Kind/name: problem" lines; empty when
 * all pass. Built-in kinds and Prometheus Operator kinds: Go strict decoding (+ kubernetes-models);
 * KEDA kinds: the CRD's OpenAPI schema with unknown fields rejected (+ strict ObjectMeta).
 */
export function validateObjects(objects: readonly K8sObject[]): string[] {
  const problems: string[] = [];
  const goChecked: K8sObject[] = [];
  const owners: K8sObject[] = [];
  for (const object of objects) {
    const id = `${object.kind}/${object.metadata?.name}`;
    const groupVersionKind = `${object.apiVersion}/${object.kind}`;
    if (object.apiVersion?.startsWith('keda.sh/')) {
      const validate = kedaValidators().get(groupVersionKind);
      if (!validate) {
        problems.push(`${id}: no KEDA CRD schema for ${groupVersionKind}`);
        continue;
      }
      if (!validate(object)) {
        for (const error of validate.errors ?? []) {
          const extra = error.keyword === 'additionalProperties' ? ` (${JSON.stringify(error.params)})` : '';
          problems.push(`${id}: ${error.instancePath || '/'} ${error.message ?? error.keyword}${extra}`);
        }
      }
      // ObjectMeta is not part of the CRD schema: check it with the Go types via a carrier object.
      goChecked.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: object.metadata });
      owners.push(object);
      continue;
    }
    const Model = MODELS[groupVersionKind];
    if (Model) {
      try {
        new Model(object as never).validate();
      } catch (error) {
        problems.push(`${id}: ${(error as Error).message}`);
      }
    } else if (!PROMETHEUS_OPERATOR_KINDS.has(groupVersionKind)) {
      problems.push(`${id}: no schema known for ${groupVersionKind}`);
    }
    goChecked.push(object);
    owners.push(object);
  }
  kubeValidate(goChecked).forEach((errors, i) => {
    const owner = owners[i];
    for (const error of errors) problems.push(`${owner?.kind}/${owner?.metadata?.name}: ${error}`);
  });
  return problems;
}

/** Env var names of the convict schema (src/cmd/common/config.ts). */
export async function configEnvNames(): Promise<Set<string>> {
  const { configSchema } = await import('../../src/cmd/common/config.ts');
  const names = new Set<string>();
  const walk = (node: unknown): void => {
    if (node === null || typeof node !== 'object') return;
    const leaf = node as { env?: unknown; default?: unknown };
    if ('default' in leaf && typeof leaf.env === 'string') {
      names.add(leaf.env);
      return;
    }
    for (const child of Object.values(node)) walk(child);
  };
  walk(configSchema);
  return names;
}
