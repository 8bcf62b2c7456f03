import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { loadGatewayConfig } from '../config/gateway.ts';
import { ErrorCode } from '../errors.ts';
import { log } from '../observability/log.ts';
import { VERSION } from '../version.ts';
import { validateFile } from './validate.ts';

const program = new Command('portico')
  .description('Portico API gateway: routes, upstreams and services from etcd or a YAML file')
  .version(VERSION);

program
  .command('start')
  .description('start the gateway')
  .addOption(new Option('-c, --config <file>', 'gateway config (portico.yaml)').default('conf/portico.yaml'))
  .addOption(new Option('--demo-upstream <addr>', 'also run the demo echo upstream (used by the bundled example routes)'))
  .action(async (opts: { config: string; demoUpstream?: string }) => {
    const { Gateway } = await import('../server/gateway.ts');
    const demo = opts.demoUpstream ? await (await import('./demo-upstream.ts')).startDemoUpstream(opts.demoUpstream) : undefined;
    const config = loadGatewayConfig(resolve(opts.config));
    const gateway = new Gateway(config);
    const addresses = await gateway.start();
    const fmt = (a: { address: string; port: number; family: string }) =>
      a.family === 'IPv6' ? `http://[${a.address}]:${a.port}` : `http://${a.address}:${a.port}`;
    process.stdout.write(
      `portico ${VERSION} (${gateway.instanceId}) listening on ${addresses.proxy.map(fmt).join(', ')}; ` +
        `status on ${fmt(addresses.status)}/status; config from ${config.config.source}` +
        (config.config.source === 'file' ? ` (${config.config.file.path})` : ` (${config.config.etcd!.endpoints.join(',')}${config.config.etcd!.prefix})`) +
        '\n',
    );
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'draining');
      gateway.stop().then(() => demo && new Promise((r) => demo.close(r))).then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, 'error while stopping');
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });

program
  .command('validate')
  .description('check a routes file (or a portico.yaml and the routes file it names); exit 1 on any error')
  .argument('<file>')
  .action(async (file: string) => {
    process.exitCode = await validateFile(resolve(file), process.stdout);
  });

program.parseAsync().catch((err: Error & { code?: string }) => {
  process.stderr.write(`portico: ${err.message}${err.code ? ` [${err.code}]` : ` [${ErrorCode.CONFIG_INVALID}]`}\n`);
  process.exit(1);
});
