/**
 * Node addresses: `host:port` strings as users write them and as the pool
 * names nodes. IPv6 literals are bracketed (`[::1]:7000`); a bare IPv6
 * literal (`::1`) or a name without a port gets the default port 7000.
 */
import { isIP } from 'node:net';
import { SD_LISTEN_PORT } from '../../protocol/constants.js';
import { InvalidArgumentError } from '../errors.js';

export interface NodeAddress {
  /** Host name or IP literal, without brackets. */
  host: string;
  port: number;
  /** Canonical `host:port` (`[v6]:port` for IPv6): the node's name in the pool. */
  key: string;
}

/** `host:port`, bracketing IPv6 literals. */
export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function checkPort(p: string, s: string): number {
  if (!/^\d{1,5}$/.test(p)) throw new InvalidArgumentError(`invalid port in node address ${JSON.stringify(s)}`);
  const port = Number(p);
  if (port < 1 || port > 65535) throw new InvalidArgumentError(`port of ${JSON.stringify(s)} must be 1..65535`);
  return port;
}

/**
 * Parse `host:port`, `host`, `[v6]:port`, `[v6]` or a bare IPv6 literal.
 * Throws InvalidArgumentError for anything else.
 */
export function parseAddress(s: string, defaultPort: number = SD_LISTEN_PORT): NodeAddress {
  if (typeof s !== 'string' || s.trim() === '') {
    throw new InvalidArgumentError(`node address must be a non-empty "host:port" string, got ${JSON.stringify(s)}`);
  }
  const t = s.trim();
  let host: string;
  let port = defaultPort;
  if (t.startsWith('[')) {
    const close = t.indexOf(']');
    if (close < 0) throw new InvalidArgumentError(`unterminated "[" in node address ${JSON.stringify(s)}`);
    host = t.slice(1, close);
    const rest = t.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) throw new InvalidArgumentError(`invalid node address ${JSON.stringify(s)}`);
      port = checkPort(rest.slice(1), s);
    }
    if (isIP(host) !== 6)
      throw new InvalidArgumentError(`${JSON.stringify(host)} in ${JSON.stringify(s)} is not an IPv6 address`);
  } else {
    const first = t.indexOf(':');
    if (first >= 0 && first !== t.lastIndexOf(':')) {
      // Several colons and no brackets: a bare IPv6 literal, default port.
      if (isIP(t) !== 6)
        throw new InvalidArgumentError(`invalid node address ${JSON.stringify(s)} (bracket IPv6: "[::1]:7000")`);
      host = t;
    } else if (first >= 0) {
      host = t.slice(0, first);
      port = checkPort(t.slice(first + 1), s);
    } else {
      host = t;
    }
    if (host === '' || /[\s/]/.test(host))
      throw new InvalidArgumentError(`invalid host in node address ${JSON.stringify(s)}`);
  }
  return { host, port, key: formatAddress(host.toLowerCase(), port) };
}
