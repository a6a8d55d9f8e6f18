/**
 * Child process of BenchService: boots the real application as the e2e tests do (temporary
 * DATA_DIR, bootstrap admin), prints where it listens as one JSON line, and stops, removing its
 * data, when its stdin closes.
 */
import { startTestApp, type DatabaseKind } from '../../test/support/test-app';

interface ServeRequest {
  env: Record<string, string>;
  database: DatabaseKind;
}

async function main(): Promise<void> {
  const request = JSON.parse(process.argv[2] ?? '{}') as ServeRequest;
  const app = await startTestApp({ env: request.env, database: request.database });
  process.stdout.write(`${JSON.stringify({ url: app.url, adminToken: app.adminToken, dataDir: app.dataDir })}\n`);
  process.stdin.resume();
  process.stdin.once('end', () => {
    app
      .close({ purge: true })
      .catch((error: unknown) => console.error(error))
      .finally(() => process.exit(0));
  });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
