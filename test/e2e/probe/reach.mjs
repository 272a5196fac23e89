// Which TCP ports a pod can open: run inside the cluster by test/e2e/network-policy.sh, in
// pods with and without the release's labels, to see what the NetworkPolicies let through.
//
//   node reach.mjs HOST:PORT...   prints {"reach": {"HOST:PORT": "open" | "timeout" | "ECONNREFUSED" | ...}}
//
// A policy that drops packets shows as "timeout"; one that rejects them, as ECONNREFUSED or
// EHOSTUNREACH. Names are resolved first, so that a DNS failure is not taken for a refusal.
// Each target is tried again every second for REACH_WAIT_MS: an enforcer learns of a new pod
// a moment after it starts (kube-router refused a pod's first connection, made as it started,
// that its policy admits), so a port is "open" if it opens within the window, and otherwise
// what its last attempt met, having stayed shut for the whole window.
import { lookup } from 'node:dns/promises';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const TIMEOUT_MS = Number(process.env.REACH_TIMEOUT_MS ?? 3000);
const WAIT_MS = Number(process.env.REACH_WAIT_MS ?? 15000);

function attempt(host, port) {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: TIMEOUT_MS });
    const done = (result) => {
      socket.destroy();
      resolve(result);
    };
    socket.once('connect', () => done('open'));
    socket.once('timeout', () => done('timeout'));
    socket.once('error', (err) => done(err.code ?? err.message));
  });
}

async function reach(target) {
  const at = target.lastIndexOf(':');
  const host = target.slice(0, at);
  const port = Number(target.slice(at + 1));
  let address;
  try {
    ({ address } = await lookup(host, { family: 4 }));
  } catch (err) {
    return `dns ${err.code ?? err.message}`;
  }
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const result = await attempt(address, port);
    if (result === 'open' || Date.now() + 1000 >= deadline) return result;
    await sleep(1000);
  }
}

const targets = process.argv.slice(2);
if (targets.length === 0) {
  console.error('usage: node reach.mjs HOST:PORT...');
  process.exit(2);
}
const results = await Promise.all(targets.map(reach));
console.log(JSON.stringify({ reach: Object.fromEntries(targets.map((t, i) => [t, results[i]])) }));
