/**
 * One redis-server for the whole suite (each test file isolates itself with a unique
 * key prefix); tests read its URL with testRedisUrl(). Tests that need their own
 * server (restarts, AOF) start one with startTestRedis().
 */
import type { TestProject } from 'vitest/node';
import { startTestRedis, type TestRedis } from './redis-server.js';

let server: TestRedis | undefined;

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

export async function setup(project: TestProject): Promise<void> {
  server = await startTestRedis();
  project.provide('redisUrl', server.url);
}

export async function teardown(): Promise<void> {
  await server?.stop();
}
