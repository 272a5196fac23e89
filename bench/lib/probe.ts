/**
 * Preloaded (--import) into every server process of the benchmark: answers the parent's
 * probes over IPC with this process's CPU time and memory, so CPU is measured the same
 * way for every variant, from inside, without touching the server's code.
 */
import type { ProbeReply, ProbeRequest } from './common.ts';

if (process.send !== undefined) {
  const send = process.send.bind(process);
  process.on('message', (message: ProbeRequest) => {
    if (message?.type !== 'probe') return;
    // With --expose-gc (soak runs), measure live memory rather than garbage not yet collected.
    if (message.gc) (globalThis as { gc?: () => void }).gc?.();
    const cpu = process.cpuUsage();
    const memory = process.memoryUsage();
    const reply: ProbeReply = {
      type: 'probe',
      id: message.id,
      cpu: { userUs: cpu.user, systemUs: cpu.system },
      rss: memory.rss,
      heapUsed: memory.heapUsed,
      external: memory.external,
    };
    send(reply);
  });
  // The channel must not keep a server alive once it has shut down.
  process.channel?.unref();
}
