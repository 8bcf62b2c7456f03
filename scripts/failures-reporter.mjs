/**
 * A node:test reporter that prints nothing until the run ends, then every failed test again —
 * file, name, and its error — under the TAP summary. A CI log often keeps only its end; a failure
 * thousands of lines up is otherwise lost there.
 *
 *   node --test --test-reporter=tap --test-reporter-destination=stdout \
 *        --test-reporter=./scripts/failures-reporter.mjs --test-reporter-destination=stdout
 */
export default async function* failuresReporter(source) {
  const failed = [];
  /** per file, the names of the suites a test sits in, by nesting level */
  const paths = new Map();
  for await (const event of source) {
    if (event.type !== 'test:start' && event.type !== 'test:fail') continue;
    const { name, nesting, file } = event.data;
    let path = paths.get(file);
    if (!path) paths.set(file, (path = []));
    if (event.type === 'test:start') {
      path.length = nesting;
      path[nesting] = name;
      continue;
    }
    // a suite fails when one of its tests does: that test is reported, not the suite again (a
    // suite whose hook failed is reported: nothing under it says so)
    const error = event.data.details?.error;
    if (event.data.details?.type === 'suite' && error?.failureType === 'subtestsFailed') continue;
    const where = [...path.slice(0, nesting), name].join(' › ');
    failed.push(`✖ ${file ?? '?'}\n  ${where}\n${indent(describe(error))}`);
  }
  if (failed.length === 0) return;
  yield `\n# ${failed.length} failure(s), repeated from above:\n${failed.join('\n')}\n`;
}

function describe(error) {
  if (!error) return 'no error given';
  const cause = error.cause ?? error;
  const text = cause?.stack ?? cause?.message ?? String(cause);
  return text.split('\n').slice(0, 12).join('\n');
}

function indent(text) {
  return text.replace(/^/gm, '    ');
}
