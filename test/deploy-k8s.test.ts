/**
 * deploy/k8s without a cluster: every object is validated against the Kubernetes API schemas
 * (kubernetes-models; the ServiceMonitor with @kubernetes-models/prometheus-operator), and the
 * pieces are checked against each other: each Deployment's config loads with Writ's schema, its
 * probes hit the config's observability port, every file the config names is mounted, the
 * network policies let each worker reach only NATS, DNS and its own targets, and the README's
 * `kubectl create secret` commands hold every secret file the configs read.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { publicKeyFileFor } from '../broker/index.ts';
import { runPolicyCli } from '../broker/rules/index.ts';
import { loadConfigFile, type Config } from '../schemas/index.ts';

const DIR = join(import.meta.dirname, '..', 'deploy', 'k8s');

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: unknown;
}
interface Container {
  name: string;
  args: string[];
  ports: Array<{ name: string; containerPort: number }>;
  env?: Array<{ name: string; value?: string; valueFrom?: unknown }>;
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  securityContext?: { readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean };
  volumeMounts: Array<{ name: string; mountPath: string }>;
}
interface Deployment extends K8sObject {
  spec: {
    replicas: number;
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string> };
      spec: {
        securityContext?: { runAsNonRoot?: boolean };
        containers: Container[];
        volumes: Array<{ name: string; configMap?: { name: string; items?: Array<{ key: string; path: string }> }; secret?: { secretName: string } }>;
      };
    };
  };
}
interface NetworkPolicy extends K8sObject {
  spec: {
    podSelector: { matchLabels?: Record<string, string> };
    policyTypes: string[];
    egress?: Array<{ to?: Array<Record<string, unknown>>; ports?: Array<{ protocol?: string; port: number }> }>;
  };
}

/** The model class of an object, by apiVersion and kind; an object no model knows fails the test. */
async function modelOf(o: K8sObject): Promise<new (data: unknown) => { validate(): void }> {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  const pkg = group === 'monitoring.coreos.com' ? '@kubernetes-models/prometheus-operator' : 'kubernetes-models';
  const mod = (await import(`${pkg}/${group ? `${group}/` : ''}${version}/${o.kind}`)) as Record<string, new (data: unknown) => { validate(): void }>;
  const model = mod[o.kind];
  if (!model) throw new Error(`no model for ${o.apiVersion} ${o.kind}`);
  return model;
}

let objects: Array<{ file: string; o: K8sObject }>;
let work: string;
const deployments = () => objects.filter((x) => x.o.kind === 'Deployment').map((x) => x.o as Deployment);
const configMap = () => objects.find((x) => x.o.kind === 'ConfigMap')!.o as K8sObject & { data: Record<string, string> };
/** The config a Deployment runs, loaded with Writ's schema from a copy of the ConfigMap. */
function configOf(d: Deployment): Config {
  const args = d.spec.template.spec.containers[0]!.args;
  const file = args[args.indexOf('--config') + 1]!;
  return loadConfigFile(join(work, file.replace('/etc/writ/config/', '')));
}

beforeAll(() => {
  objects = readdirSync(DIR)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((file) =>
      parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((doc) => {
        if (doc.errors.length) throw new Error(`${file}: ${doc.errors[0]!.message}`);
        return { file, o: doc.toJS() as K8sObject };
      }),
    );
  work = mkdtempSync(join(tmpdir(), 'writ-deploy-k8s-'));
  for (const [k, v] of Object.entries(configMap().data)) writeFileSync(join(work, k), v);
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('deploy/k8s', () => {
  it('every object is valid against the Kubernetes (and Prometheus Operator) schemas', async () => {
    expect(objects.length).toBeGreaterThan(10);
    const kinds = new Set(objects.map((x) => x.o.kind));
    for (const k of ['Namespace', 'ConfigMap', 'Deployment', 'Service', 'ServiceMonitor', 'NetworkPolicy', 'PodDisruptionBudget']) expect(kinds.has(k), k).toBe(true);
    for (const { file, o } of objects) {
      const Model = await modelOf(o);
      expect(() => new Model(o).validate(), `${file}: ${o.kind} ${o.metadata.name}`).not.toThrow();
      if (o.kind !== 'Namespace') expect(o.metadata.namespace, `${file}: ${o.kind} ${o.metadata.name}`).toBe('writ');
    }
  });

  it('the validation refuses a broken object (the check is real)', async () => {
    const d = structuredClone(deployments()[0]!) as unknown as { spec: Record<string, unknown> };
    delete d.spec.selector;
    const Model = await modelOf(d as unknown as K8sObject);
    expect(() => new Model(d).validate()).toThrow(/selector/);
    const sm = structuredClone(objects.find((x) => x.o.kind === 'ServiceMonitor')!.o) as K8sObject & { spec: { endpoints: Array<{ interval: string }> } };
    sm.spec.endpoints[0]!.interval = 'thirty seconds';
    const SM = await modelOf(sm);
    expect(() => new SM(sm).validate()).toThrow(/interval/);
  });

  it('runs a broker and one worker per target kind, replicated, with resources, as non-root on a read-only root', () => {
    expect(
      deployments()
        .map((d) => d.metadata.name)
        .sort(),
    ).toEqual(['writ-broker', 'writ-worker-postgres', 'writ-worker-ssh']);
    for (const d of deployments()) {
      const c = d.spec.template.spec.containers[0]!;
      expect(d.spec.replicas, d.metadata.name).toBeGreaterThanOrEqual(2);
      expect(c.resources.requests?.cpu && c.resources.requests.memory && c.resources.limits?.memory, d.metadata.name).toBeTruthy();
      expect(d.spec.template.spec.securityContext?.runAsNonRoot, d.metadata.name).toBe(true);
      expect(c.securityContext, d.metadata.name).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
      // The selector picks the template's pods, and only this component's.
      expect(d.spec.template.metadata.labels, d.metadata.name).toMatchObject(d.spec.selector.matchLabels);
      expect(d.spec.selector.matchLabels['app.kubernetes.io/component'], d.metadata.name).toBe(d.metadata.name.replace(/^writ-/, ''));
      // Secrets are files: no secret in the environment.
      for (const e of c.env ?? []) expect(e.valueFrom, `${d.metadata.name} ${e.name}`).toBeUndefined();
    }
  });

  it('probes /healthz for liveness and /readyz for readiness on the port the config serves them on', () => {
    for (const d of deployments()) {
      const c = d.spec.template.spec.containers[0]!;
      const config = configOf(d);
      const port = c.ports.find((p) => p.name === c.livenessProbe?.httpGet?.port);
      expect(port?.containerPort, d.metadata.name).toBe(config.observability.port);
      expect(config.observability.host, d.metadata.name).toBe('0.0.0.0');
      expect(c.livenessProbe?.httpGet?.path, d.metadata.name).toBe('/healthz');
      expect(c.readinessProbe?.httpGet, d.metadata.name).toEqual({ path: '/readyz', port: c.livenessProbe!.httpGet!.port });
      expect(c.args[0], d.metadata.name).toBe(d.metadata.name === 'writ-broker' ? 'broker' : 'worker');
    }
  });

  it("mounts every file a config names, from the component's own Secret, and nothing of the others'", () => {
    const readme = readFileSync(join(DIR, 'README.md'), 'utf8');
    for (const d of deployments()) {
      const c = d.spec.template.spec.containers[0]!;
      const config = configOf(d);
      const secretMount = c.volumeMounts.find((m) => d.spec.template.spec.volumes.find((v) => v.name === m.name)?.secret)!;
      const secretName = d.spec.template.spec.volumes.find((v) => v.name === secretMount.name)!.secret!.secretName;
      expect(secretName).toBe(d.metadata.name);
      const files = new Set<string>();
      const visit = (v: unknown): void => {
        if (typeof v === 'string' && v.startsWith(`${secretMount.mountPath}/`)) files.add(v.slice(secretMount.mountPath.length + 1));
        else if (v && typeof v === 'object') Object.values(v).forEach(visit);
      };
      visit(config);
      // A broker reads its grant key's public half beside it (broker/keys.ts).
      if (files.has(config.grants.keyFile.slice(secretMount.mountPath.length + 1))) visit(publicKeyFileFor(config.grants.keyFile));
      if (config.audit.signingKeyDir === secretMount.mountPath) files.add(`audit-${d.metadata.name === 'writ-broker' ? 'broker' : 'worker'}.pem`);
      // The README's command for this Secret creates exactly these keys.
      const cmd = new RegExp(`create secret generic ${secretName} ((?:\\\\\\n|[^\\n])*)`).exec(readme);
      expect(cmd, `README creates ${secretName}`).not.toBeNull();
      const keys = [...cmd![1]!.matchAll(/--from-file=([^=\s]+)/g)].map((m) => m[1]);
      expect(new Set(keys), secretName).toEqual(files);
      // The configs (and the broker's policy) come from the ConfigMap, mounted where --config points.
      expect(c.volumeMounts.some((m) => m.mountPath === '/etc/writ/config')).toBe(true);
    }
    // The grant-signing key is the brokers' alone.
    expect(readme.match(/--from-file=grant-key\.pem/g)).toHaveLength(1);
  });

  it("the ConfigMap's policy passes its checks", async () => {
    let out = '';
    const io = { stdin: process.stdin, stdout: (s: string) => (out += s), stderr: (s: string) => (out += s) };
    expect(await runPolicyCli(['check', join(work, 'policy.yaml')], io), out).toBe(0);
    const broker = configOf(deployments().find((d) => d.metadata.name === 'writ-broker')!);
    expect(broker.policyFile).toBe(join(work, 'policy.yaml'));
    expect(broker.identity.devIssuer.enabled).toBe(false);
    expect(broker.nats.replicas).toBe(3);
  });

  it("lets each worker reach NATS, DNS and its own targets' port, and nothing else", () => {
    const policies = objects.filter((x) => x.o.kind === 'NetworkPolicy').map((x) => x.o as NetworkPolicy);
    const applies = (p: NetworkPolicy, labels: Record<string, string>) => Object.entries(p.spec.podSelector.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
    // Deny by default: one policy selects every Writ pod for both directions with no rule.
    expect(
      policies.some(
        (p) =>
          p.spec.podSelector.matchLabels?.['app.kubernetes.io/name'] === 'writ' &&
          Object.keys(p.spec.podSelector.matchLabels).length === 1 &&
          p.spec.policyTypes.includes('Ingress') &&
          p.spec.policyTypes.includes('Egress') &&
          !p.spec.egress &&
          !(p.spec as { ingress?: unknown }).ingress,
      ),
    ).toBe(true);
    for (const d of deployments()) {
      const labels = d.spec.template.metadata.labels;
      const egress = policies.filter((p) => applies(p, labels)).flatMap((p) => p.spec.egress ?? []);
      const ports = new Set(egress.flatMap((e) => (e.ports ?? []).map((p) => `${p.protocol ?? 'TCP'}/${p.port}`)));
      // Every rule names its destinations and ports: none is open to all.
      for (const e of egress) expect(e.to?.length && e.ports?.length, d.metadata.name).toBeTruthy();
      const config = configOf(d);
      const targetPorts = [...config.workers.postgres, ...config.workers.ssh, ...config.workers.mysql].map((w) => `TCP/${w.port}`);
      const expected = new Set(['TCP/4222', 'UDP/53', 'TCP/53', ...targetPorts, ...(d.metadata.name === 'writ-broker' ? ['TCP/443'] : [])]);
      expect(ports, d.metadata.name).toEqual(expected);
    }
  });

  it('the ServiceMonitor scrapes the metrics port of the Service that selects every Writ pod', () => {
    const svc = objects.find((x) => x.o.kind === 'Service')!.o as K8sObject & { spec: { selector: Record<string, string>; ports: Array<{ name: string; port: number }> } };
    const sm = objects.find((x) => x.o.kind === 'ServiceMonitor')!.o as K8sObject & { spec: { selector: { matchLabels: Record<string, string> }; endpoints: Array<{ port: string; path: string }> } };
    expect(svc.metadata.labels).toMatchObject(sm.spec.selector.matchLabels);
    expect(svc.spec.ports.map((p) => p.name)).toContain(sm.spec.endpoints[0]!.port);
    expect(sm.spec.endpoints[0]!.path).toBe('/metrics');
    for (const d of deployments()) expect(d.spec.template.metadata.labels, d.metadata.name).toMatchObject(svc.spec.selector);
  });
});
