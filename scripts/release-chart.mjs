// The packaged chart's copy of values.yaml and Chart.yaml, as scripts/release.sh ships them:
// server and client by repository, version tag and digest; the broker and Jaeger by digest
// when their digests are known; the artifacthub.io/images annotation listing every image.
// Comments and layout of both files are kept (yaml's Document API).
//
//   CHART_DIR=... VERSION=... PLATFORMS=... SERVER_REPO= SERVER_DIGEST= CLIENT_REPO= CLIENT_DIGEST= \
//   RABBITMQ_REF= RABBITMQ_PIN= JAEGER_REF= JAEGER_PIN= node scripts/release-chart.mjs
import { readFileSync, writeFileSync } from 'node:fs';
import YAML from 'yaml';

const e = process.env;
for (const key of [
  'CHART_DIR',
  'VERSION',
  'PLATFORMS',
  'SERVER_REPO',
  'SERVER_DIGEST',
  'CLIENT_REPO',
  'CLIENT_DIGEST',
]) {
  if (!e[key]) throw new Error(`release-chart: ${key} is not set`);
}
const dir = e.CHART_DIR;
const values = YAML.parseDocument(readFileSync(`${dir}/values.yaml`, 'utf8'));
for (const [key, repo, digest] of [
  ['server', e.SERVER_REPO, e.SERVER_DIGEST],
  ['client', e.CLIENT_REPO, e.CLIENT_DIGEST],
]) {
  values.setIn([key, 'image', 'repository'], repo);
  values.setIn([key, 'image', 'tag'], e.VERSION);
  values.setIn([key, 'image', 'digest'], digest);
}
if (e.RABBITMQ_PIN) values.setIn(['rabbitmq', 'image', 'digest'], e.RABBITMQ_PIN);
if (e.JAEGER_PIN) values.setIn(['jaeger', 'image', 'digest'], e.JAEGER_PIN);
// No re-wrapping of long lines, no padding inside [ ]: only the changed lines differ.
const style = { lineWidth: 0, flowCollectionPadding: false };
writeFileSync(`${dir}/values.yaml`, values.toString(style));

const chart = YAML.parseDocument(readFileSync(`${dir}/Chart.yaml`, 'utf8'));
const platforms = e.PLATFORMS.split(',');
const pin = (ref, digest) => (digest ? `${ref}@${digest}` : ref);
const images = [
  { name: 'fib-rpc-server', image: `${e.SERVER_REPO}:${e.VERSION}@${e.SERVER_DIGEST}`, platforms },
  { name: 'fib-rpc-client', image: `${e.CLIENT_REPO}:${e.VERSION}@${e.CLIENT_DIGEST}`, platforms },
  { name: 'rabbitmq', image: pin(e.RABBITMQ_REF, e.RABBITMQ_PIN) },
  { name: 'jaeger', image: pin(e.JAEGER_REF, e.JAEGER_PIN) },
];
// A literal block (|): Artifact Hub parses the annotation's text as YAML itself.
const annotation = new YAML.Scalar(YAML.stringify(images, { aliasDuplicateObjects: false }));
annotation.type = 'BLOCK_LITERAL';
chart.setIn(['annotations', 'artifacthub.io/images'], annotation);
writeFileSync(`${dir}/Chart.yaml`, chart.toString(style));
