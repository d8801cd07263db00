/**
 * FlexStore's test support, in one place: import from here.
 *
 * - temp-dir.ts: temp dirs removed when the tests around them end.
 * - records.ts: versions and replica records for writing to storage or a replica directly.
 * - in-process.ts: a registry and KV servers in the test's own process.
 * - cluster.ts: a cluster of real processes started through the CLI (integration and fault tests).
 * - kv-data.ts: writing known pairs through a gateway and reading them back.
 * - process.ts, probe.ts: starting processes, free ports, waiting, and HTTP probes;
 *   the benchmark builds its clusters on these too.
 * - fuzz.ts: case counts and string generators of the property-based fuzz tests
 *   (which import it directly, to stay free of the process machinery above).
 */
export { tempDirs } from './temp-dir.js';
export { record, stamped, tombstone, version } from './records.js';
export { InProcessCluster, type InProcessClusterOptions } from './in-process.js';
export { TestCluster, sharedCerts, testClusters, tlsProbe, type ClusterOptions, type KvOptions } from './cluster.js';
export { BIN, FlexProcess, ManagedProcess, freePort, runCli, waitFor, type CliResult, type ProcessExit } from './process.js';
export { http, isUpAndActive, kvUrl, setProbeSecret, setProbeTls, waitHealthy, type HttpResult, type ProbeTls } from './probe.js';
export { ackedAcrossFault, assertAllRead, eachLimit, putAll, type Entries } from './kv-data.js';
export { DEFAULT_FUZZ_RUNS, FUZZ_LONG_FACTOR, FUZZ_RUNS, codeUnitString, fuzzParams, wellFormedString } from './fuzz.js';
