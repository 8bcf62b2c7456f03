import { request } from 'node:http';

/** GET on a new connection (no keep-alive agent): what a fresh client sees, spread over workers. */
export function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // (fetch cannot set Host: node:http can)
    request(url, { agent: false, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}
