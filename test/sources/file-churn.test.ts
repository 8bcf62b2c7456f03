/**
 * A routes file rewritten faster than the file source's debounce (a script applying 100 changes/s,
 * found by bench/churn.ts) must still go live while it is being written: the reload waits for quiet,
 * but at most a few debounce periods.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import type { ChangeSet } from '../../src/config/changeset.ts';
import { FileSource } from '../../src/sources/file.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';

test('a file saved every 10 ms is reloaded while the saves go on', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-churn-'));
  const file = path.join(dir, 'routes.yaml');
  const save = (n: number) => {
    const doc = { upstreams: [{ id: 'u', nodes: { '127.0.0.1:1': 1 } }], routes: [{ id: 'r', uri: `/v${n}`, upstream_id: 'u' }] };
    writeFileSync(`${file}.tmp`, stringify(doc));
    renameSync(`${file}.tmp`, file);
  };
  save(0);
  const applied: { at: number; uri: unknown }[] = [];
  const source = new FileSource({ path: file });
  await source.start({
    onChangeSet: (cs: ChangeSet) => {
      for (const c of cs.changes) if (c.kind === 'routes' && !c.deleted) applied.push({ at: Date.now(), uri: (c.value as { uri?: unknown }).uri });
    },
    onState: () => {},
  });
  try {
    const started = Date.now();
    let n = 0;
    // one second of saves 10 ms apart: a trailing-only debounce never fires during it
    while (Date.now() - started < 1000) {
      save(++n);
      await sleep(10);
    }
    // (a trailing-only debounce reloads 0 times meanwhile; this reloads every few debounce periods,
    // ~5 times here, but a loaded machine may starve the source's thread: 2 is the bound asserted)
    const during = applied.filter((a) => a.at > started && a.at < started + 1000);
    assert.ok(during.length >= 2, `reloads while saving: ${during.length} (of ${n} saves)`);
    await waitUntil(() => applied.at(-1)?.uri === `/v${n}`, 3000, 'the last save applied');
  } finally {
    await source.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
