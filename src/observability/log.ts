import pino, { type Logger } from 'pino';

/**
 * One process-wide logger. JSON lines on stderr (stdout stays free for CLI output). Level from
 * PORTICO_LOG_LEVEL (default info). The data plane logs nothing per request at info level.
 */
export const log: Logger = pino(
  { name: 'portico', level: process.env.PORTICO_LOG_LEVEL ?? 'info', base: { pid: process.pid } },
  pino.destination({ dest: 2, sync: true }),
);

export type { Logger };
