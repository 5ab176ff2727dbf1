/** security/ sits below migration/: it imports nothing of ours outside itself. */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../helpers/repo.ts';

test('src/security imports only itself and node', () => {
  const dir = join(REPO_ROOT, 'src', 'security');
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
  assert.ok(files.length > 0);
  for (const f of files) {
    const text = readFileSync(join(dir, f), 'utf8');
    for (const m of text.matchAll(/^import [^;]*? from '([^']+)';$/gm)) {
      const from = m[1]!;
      assert.ok(
        from.startsWith('./') || from.startsWith('node:'),
        `${f} imports ${from}: security/ must not depend on the layers above it`,
      );
    }
  }
});
