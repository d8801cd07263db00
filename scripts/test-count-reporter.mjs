// A node:test reporter for scripts/run-tests.mjs: counts the tests each file
// ran and, when the run ends, writes one JSON object { "<absolute path>":
// { tests, failedToRun } } to its destination. Suites (describe) are not
// tests. A file whose process failed before reporting any test (a crash at
// import, a file-level timeout) shows up as an event named after the file
// itself, which is not counted either.
export default async function* countTestsPerFile(source) {
  const files = new Map();
  const entry = (file) => {
    let e = files.get(file);
    if (!e) files.set(file, (e = { tests: 0, failedToRun: false, durationMs: 0 }));
    return e;
  };
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { file, name, details, nesting } = event.data;
    if (!file) continue;
    const e = entry(file);
    // Top-level tests and suites of a file run one after another: their sum is the file's time.
    if (nesting === 0 && name !== file) e.durationMs += details?.duration_ms ?? 0;
    if (name === file) {
      if (event.type === 'test:fail') e.failedToRun = true;
    } else if (details?.type !== 'suite') {
      e.tests++;
    }
  }
  yield `${JSON.stringify(Object.fromEntries(files))}\n`;
}
