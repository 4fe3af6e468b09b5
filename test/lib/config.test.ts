import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_INSTANCE_TYPES, loadConfig, readSecretFile } from '../../lib/config.js';
import { ConfigError } from '../../lib/errors.js';
import { tempDir } from '../support/cli.js';

describe('loadConfig', () => {
  it('uses defaults, then the config file, then the environment', () => {
    expect(loadConfig(['memoryDir', 'memoryMaxBytes'], { env: {} })).toEqual({
      memoryDir: '/memory',
      memoryMaxBytes: 1024 * 1024,
    });
    const dir = tempDir();
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ memoryDir: '/from-file', memoryMaxBytes: 2048 }));
    expect(loadConfig(['memoryDir', 'memoryMaxBytes'], { env: { CLAWDINATOR_CONFIG: file } })).toEqual({
      memoryDir: '/from-file',
      memoryMaxBytes: 2048,
    });
    const env = { CLAWDINATOR_CONFIG: file, CLAWDINATOR_MEMORY_MAX_BYTES: '4096' };
    expect(loadConfig(['memoryDir', 'memoryMaxBytes'], { env })).toEqual({
      memoryDir: '/from-file',
      memoryMaxBytes: 4096,
    });
  });

  it('names the setting and what it expects, in one line', () => {
    const bad = () => loadConfig(['memoryMaxBytes'], { env: { CLAWDINATOR_MEMORY_MAX_BYTES: 'lots' } });
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow('config: CLAWDINATOR_MEMORY_MAX_BYTES is invalid: expected a whole number of bytes');
    expect(() => loadConfig(['logLevel'], { env: { CLAWDINATOR_LOG_LEVEL: 'loud' } })).toThrow(
      /^config: CLAWDINATOR_LOG_LEVEL is invalid: expected one of/,
    );
  });

  it('validates only what a command asks for', () => {
    const env = { CLAWDINATOR_LOG_LEVEL: 'loud' };
    expect(loadConfig(['memoryDir'], { env })).toEqual({ memoryDir: '/memory' });
  });

  it('refuses unknown keys and unreadable files in the config file', () => {
    const dir = tempDir();
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ memoryDirr: '/x' }));
    expect(() => loadConfig(['memoryDir'], { env: { CLAWDINATOR_CONFIG: file } })).toThrow(
      /unknown setting "memoryDirr"/,
    );
    writeFileSync(file, '{nope');
    expect(() => loadConfig(['memoryDir'], { env: { CLAWDINATOR_CONFIG: file } })).toThrow(/is not valid JSON/);
    expect(() => loadConfig(['memoryDir'], { env: { CLAWDINATOR_CONFIG: join(dir, 'missing.json') } })).toThrow(
      /cannot be read \(ENOENT\)/,
    );
  });
});

describe('fleet names and instance types', () => {
  const name = (v: string) => loadConfig(['hostName'], { env: { CLAWDINATOR_HOST_NAME: v } }).hostName;
  const keyId = (v: string) => loadConfig(['jobKeyId'], { env: { CLAWDINATOR_JOB_KEY_ID: v } }).jobKeyId;

  it('takes host-name-shaped names of at most 40 characters', () => {
    for (const ok of ['clawdinator-1', 'clawdinator-babelfish', 'clawdinator-eu-2', `clawdinator-${'a'.repeat(28)}`]) {
      expect(name(ok)).toBe(ok);
      expect(keyId(`agent:${ok}`)).toBe(`agent:${ok}`);
    }
  });

  it('refuses a trailing, leading or doubled "-", other characters and 41 characters, in config and key ids', () => {
    for (const bad of [
      'clawdinator-3-',
      'clawdinator--3',
      'clawdinator-',
      'clawdinator-Three',
      `clawdinator-${'a'.repeat(29)}`,
    ]) {
      expect(() => name(bad)).toThrow(/^config: CLAWDINATOR_HOST_NAME is invalid: expected this host’s fleet name/);
      expect(() => keyId(`agent:${bad}`)).toThrow(/^config: CLAWDINATOR_JOB_KEY_ID is invalid/);
    }
  });

  it('allow-lists instance types: the original’s and a few larger by default, a JSON list otherwise', () => {
    expect(loadConfig(['instanceTypes'], { env: {} }).instanceTypes).toEqual([...DEFAULT_INSTANCE_TYPES]);
    expect(DEFAULT_INSTANCE_TYPES).toEqual(expect.arrayContaining(['t3.small', 't3.large']));
    const env = { CLAWDINATOR_INSTANCE_TYPES: '["t3.small","m7i.2xlarge"]' };
    expect(loadConfig(['instanceTypes'], { env }).instanceTypes).toEqual(['t3.small', 'm7i.2xlarge']);
    expect(() => loadConfig(['instanceTypes'], { env: { CLAWDINATOR_INSTANCE_TYPES: '["t3.large; rm"]' } })).toThrow(
      /^config: CLAWDINATOR_INSTANCE_TYPES is invalid: expected a JSON list of EC2 instance types/,
    );
    expect(() => loadConfig(['instanceTypes'], { env: { CLAWDINATOR_INSTANCE_TYPES: '[]' } })).toThrow(ConfigError);
  });
});

describe('readSecretFile', () => {
  it('reads a secret and never echoes it in an error', () => {
    const dir = tempDir();
    const file = join(dir, 'token');
    writeFileSync(file, 'sekrit-value-123\n');
    expect(readSecretFile(file, 'CLAWDINATOR_X_FILE')).toBe('sekrit-value-123');
    writeFileSync(file, '  \n');
    expect(() => readSecretFile(file, 'CLAWDINATOR_X_FILE')).toThrow('config: CLAWDINATOR_X_FILE names');
    writeFileSync(file, 'sekrit-value-123');
    expect(() => readSecretFile(join(dir, 'none'), 'CLAWDINATOR_X_FILE')).toThrow(/cannot be read \(ENOENT\)$/);
  });
});
