import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { ErrorCode } from '../errors.ts';
import { VERSION } from '../version.ts';

// Loaded by the commands that use it, not here: `start` forks its first worker before it loads the
// config's schemas and validator (see below), and --version does not load them.
const gatewayConfig = () => import('../config/gateway.ts');

const program = new Command('portico')
  .description('Portico API gateway: routes, upstreams and services from etcd or a YAML file')
  .version(VERSION);

program
  .command('start')
  .description('start the gateway')
  .addOption(new Option('-c, --config <file>', 'gateway config (portico.yaml)').default('conf/portico.yaml'))
  .addOption(new Option('--demo-upstream <addr>', 'also run the demo echo upstream (used by the bundled example routes)'))
  .action(async (opts: { config: string; demoUpstream?: string }) => {
    const path = resolve(opts.config);
    // with workers, the first one now, before portico.yaml is validated: it loads its code on the
    // core this process leaves idle while it loads its own; the others when the gateway starts
    // (all of them now made this process's own loading, which the start waits for, slower: at 50,000
    // routes 2.42-2.50 s against 2.23-2.38 s, medians of 10 and 12 alternating starts)
    const { forkEarly, killWorkers, requestedWorkers, workerCount } = await import('../server/worker-fork.ts');
    let early = requestedWorkers(path) > 1 ? forkEarly(1) : [];
    let started;
    try {
      const config = (await gatewayConfig()).loadGatewayConfig(path);
      const workers = workerCount(config.proxy.workers);
      if (workers < 2 && early.length > 0) {
        // the file changed in between, to no workers
        killWorkers();
        early = [];
      }
      // before any config is read: objects are validated against the plugins this process knows
      await (await import('../plugins/registry.ts')).setupPlugins(config);
      const { ClusterGateway } = await import('../server/cluster.ts');
      const { Gateway } = await import('../server/gateway.ts');
      const demo = opts.demoUpstream ? await (await import('./demo-upstream.ts')).startDemoUpstream(opts.demoUpstream) : undefined;
      const gateway = workers > 1 ? new ClusterGateway(config, workers, early) : new Gateway(config);
      started = { config, workers, demo, gateway, addresses: await gateway.start() };
    } catch (err) {
      // the error is the one to report, not the workers' broken pipe once this process is gone
      killWorkers();
      throw err;
    }
    const { config, workers, demo, gateway, addresses } = started;
    const { log } = await import('../observability/log.ts');
    const fmt = (a: { address: string; port: number; family: string }, scheme = 'http') =>
      a.family === 'IPv6' ? `${scheme}://[${a.address}]:${a.port}` : `${scheme}://${a.address}:${a.port}`;
    // addresses come in config order: listen, tls_listen, then stream_listen
    const plain = config.proxy.listen.length;
    const https = plain + config.proxy.tls_listen.length;
    const listening = addresses.proxy.map((a, i) => fmt(a, i < plain ? 'http' : i < https ? 'https' : 'stream'));
    process.stdout.write(
      `portico ${VERSION} (${gateway.instanceId}${workers > 1 ? `, ${workers} workers` : ''}) listening on ${listening.join(', ')}; ` +
        `status on ${fmt(addresses.status)}/status${config.status.dashboard ? `, dashboard on ${fmt(addresses.status)}/dashboard` : ''}; ` +
        (addresses.admin !== undefined ? `admin on port ${addresses.admin} (/apisix/admin/); ` : '') +
        `config from ${config.config.source}` +
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
    // logrotate: `postrotate kill -USR1 <pid>` (the file was moved: write to a new one at its path)
    process.on('SIGUSR1', () => gateway.reopenLogs());
  });

program
  .command('validate')
  .description('check a routes file (or a portico.yaml and the routes file it names); exit 1 on any error')
  .argument('<file>')
  .action(async (file: string) => {
    const { validateFile } = await import('./validate.ts');
    process.exitCode = await validateFile(resolve(file), process.stdout);
  });

program
  .command('status')
  .description("print this instance's /status, or with --fleet every instance registered in etcd")
  .addOption(new Option('-c, --config <file>', 'gateway config (portico.yaml)').default('conf/portico.yaml'))
  .option('--fleet', 'list every instance sharing this etcd and whether it serves the current config')
  .option('--json', 'print JSON')
  .action(async (opts: { config: string; fleet?: boolean; json?: boolean }) => {
    const config = (await gatewayConfig()).loadGatewayConfig(resolve(opts.config));
    if (opts.fleet) {
      if (config.config.source !== 'etcd') throw Object.assign(new Error('--fleet needs config.source: etcd'), { code: ErrorCode.CONFIG_INVALID });
      const { readFleet, formatFleet } = await import('./fleet.ts');
      const view = await readFleet(config);
      process.stdout.write((opts.json ? JSON.stringify(view, null, 2) : formatFleet(view)) + '\n');
      // exit 2 while some instance lags, so scripts can wait for convergence
      if (view.instances.some((i) => !i.converged)) process.exitCode = 2;
      return;
    }
    const { host, port } = (await import('../config/listen.ts')).parseListen(config.status.listen);
    const target = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
    const res = await fetch(`http://${target}:${port}/status`);
    const report = await res.json();
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  });

// `start` (and --version) have no use for the admin commands' code (the etcd client, the changeset
// tools): it is loaded for the other commands and for --help only (a worker process runs server/worker-main.ts)
if (!['start', '--version', '-V'].includes(process.argv[2] ?? '')) (await import('./admin.ts')).registerAdminCommands(program);

program.parseAsync().catch((err: Error & { code?: string }) => {
  process.stderr.write(`portico: ${err.message}${err.code ? ` [${err.code}]` : ` [${ErrorCode.CONFIG_INVALID}]`}\n`);
  process.exit(1);
});
