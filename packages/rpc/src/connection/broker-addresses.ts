/**
 * The broker addresses of a connection setting: one AMQP URL, or several separated by commas
 * (the nodes of a RabbitMQ cluster, or brokers behind no load balancer). A comma only
 * separates where the next URL begins, so a comma inside a password stays part of it.
 */
export function parseBrokerUrls(raw: string): string[] {
  return raw
    .split(/,(?=\s*amqps?:\/\/)/i)
    .map((url) => url.trim().replace(/[\s,]+$/, ''))
    .filter((url) => url !== '');
}

/** The broker's address for messages and errors: scheme, host, port and vhost, never credentials. */
export function describeBroker(raw: string): string {
  try {
    const url = new URL(raw);
    return `${url.protocol}//${url.host}${url.pathname && url.pathname !== '/' ? url.pathname : ''}`;
  } catch {
    return '<invalid broker url>';
  }
}

/** Every address of a setting, described, comma-separated. */
export function describeBrokers(raw: string): string {
  return parseBrokerUrls(raw).map(describeBroker).join(', ');
}

/** The URL with the heartbeat interval unless the URL sets its own. */
export function withHeartbeat(raw: string, heartbeatS: number): string {
  const url = new URL(raw);
  if (!url.searchParams.has('heartbeat')) url.searchParams.set('heartbeat', String(heartbeatS));
  return url.toString();
}

/** The vhost an AMQP URL names ("/" when it names none), as RabbitMQ and amqplib read it. */
export function vhostOf(url: string): string {
  try {
    const path = new URL(url).pathname;
    return path === '' || path === '/' ? '/' : decodeURIComponent(path.slice(1));
  } catch {
    return '/';
  }
}
